//! `digest_auth` (RFC 7616, §2.3, R-129): response check, replay cache, server nonces.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use md5::Md5;
use sha2::{Digest as _, Sha256};
use webhook_connect_protocol::config_values::Secret;

use super::ct::ct_eq;
use super::nonce_cache::{NonceCache, NonceOutcome, nonce_key};
use super::rejection::Rejection;

/// The digest hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DigestAlgorithm {
    Md5,
    Sha256,
}

impl DigestAlgorithm {
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("md5") {
            Some(DigestAlgorithm::Md5)
        } else if text.eq_ignore_ascii_case("sha-256") {
            Some(DigestAlgorithm::Sha256)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Sha256 => "SHA-256",
        }
    }

    fn hash(self, text: &str) -> String {
        match self {
            DigestAlgorithm::Md5 => hex::encode(Md5::digest(text.as_bytes())),
            DigestAlgorithm::Sha256 => hex::encode(Sha256::digest(text.as_bytes())),
        }
    }
}

#[derive(Debug)]
pub(crate) struct DigestMethod {
    pub username: Secret,
    pub password: Secret,
    pub realm: String,
    pub algorithm: DigestAlgorithm,
    pub require_server_nonce: bool,
    pub nonce_ttl: i64,
    /// Per-process key for issued nonces.
    pub nonce_key: Secret,
    pub replay: NonceCache,
}

/// How long the replay cache keeps an accepted (`nonce`, `nc`, `cnonce`): one second longer than
/// a nonce lives, because an issued nonce is still accepted at exactly `nonce_ttl` seconds after
/// its issue and a cache entry is gone at exactly its retention after its use.
pub(crate) fn replay_retention(nonce_ttl: i64) -> i64 {
    nonce_ttl.saturating_add(1)
}

/// Parses an RFC 7616 parameter list: `name=token` or `name="quoted-string"`, comma-separated.
pub(crate) fn parse_auth_params(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t' || bytes[i] == b',') {
            i += 1;
        }
        if i >= bytes.len() {
            return Some(out);
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b',' && bytes[i] != b' ' {
            i += 1;
        }
        let name = text.get(start..i)?.to_ascii_lowercase();
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if name.is_empty() || i >= bytes.len() || bytes[i] != b'=' {
            return None;
        }
        i += 1;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let mut value = Vec::new();
        if i < bytes.len() && bytes[i] == b'"' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return None,
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        value.push(*bytes.get(i + 1)?);
                        i += 2;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < bytes.len() && bytes[i] != b',' && bytes[i] != b' ' && bytes[i] != b'\t' {
                value.push(bytes[i]);
                i += 1;
            }
        }
        out.push((name, String::from_utf8(value).ok()?));
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
            i += 1;
        }
        if i < bytes.len() && bytes[i] != b',' {
            return None;
        }
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

impl DigestMethod {
    fn nonce_mac(&self, ts: i64) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.nonce_key.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(&ts.to_be_bytes());
        mac.finalize().into_bytes()[..16].to_vec()
    }

    /// A fresh server nonce: base64 of the timestamp and an HMAC of it.
    pub fn issue_nonce(&self, now: i64) -> String {
        let mut raw = now.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.nonce_mac(now));
        STANDARD.encode(raw)
    }

    /// When `nonce` is one this relay issued (its HMAC verifies): the time it was issued.
    fn issued_at(&self, nonce: &str) -> Option<i64> {
        let raw = STANDARD.decode(nonce).ok()?;
        if raw.len() != 24 {
            return None;
        }
        let mut ts_bytes = [0u8; 8];
        ts_bytes.copy_from_slice(&raw[..8]);
        let ts = i64::from_be_bytes(ts_bytes);
        ct_eq(&raw[8..], &self.nonce_mac(ts)).then_some(ts)
    }

    /// True while an issued nonce is alive: issued by this relay at most `nonce_ttl` ago.
    fn nonce_is_ours(&self, nonce: &str, now: i64) -> bool {
        self.issued_at(nonce)
            .is_some_and(|ts| ts <= now && now.saturating_sub(ts) <= self.nonce_ttl)
    }

    fn fail(&self, detail: impl Into<String>, now: i64) -> Rejection {
        let challenge = format!(
            "Digest realm=\"{}\", qop=\"auth\", algorithm={}, nonce=\"{}\"",
            self.realm.replace(['"', '\\'], ""),
            self.algorithm.name(),
            self.issue_nonce(now)
        );
        let mut r = Rejection::unauthorized(detail);
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r = r.with_header(http::header::WWW_AUTHENTICATE, v);
        }
        r
    }

    pub fn check(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<(), Rejection> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(self.fail("Missing Authorization header", now));
        };
        let text = String::from_utf8_lossy(value.as_bytes());
        let text = text.trim();
        let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(self.fail("Digest authentication required", now));
        }
        let Some(params) = parse_auth_params(rest) else {
            return Err(self.fail("Missing required Digest parameter: username", now));
        };
        let mut required = [""; 5];
        for (slot, name) in required
            .iter_mut()
            .zip(["username", "realm", "nonce", "uri", "response"])
        {
            match param(&params, name) {
                Some(v) => *slot = v,
                None => {
                    return Err(
                        self.fail(format!("Missing required Digest parameter: {name}"), now)
                    );
                }
            }
        }
        let [username, realm, nonce, digest_uri, response] = required;
        if !ct_eq(username.as_bytes(), self.username.expose().as_bytes()) {
            return Err(self.fail("Invalid digest auth username", now));
        }
        if realm != self.realm {
            return Err(self.fail("Invalid digest auth realm", now));
        }
        if let Some(alg) = param(&params, "algorithm")
            && !alg.eq_ignore_ascii_case(self.algorithm.name())
        {
            return Err(self.fail(format!("Invalid digest auth algorithm: {alg}"), now));
        }
        let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        if digest_uri != target {
            return Err(self.fail("Invalid digest auth uri", now));
        }
        // A nonce the relay issued lives `nonce_ttl` seconds, and its replay entry (kept
        // `nonce_ttl` seconds from its use) outlives it, so a captured header is refused for as
        // long as its nonce would be accepted. Such a nonce is held to its life even when
        // foreign nonces are allowed (`require_server_nonce = false`, where a foreign nonce's
        // replay is refused only for `nonce_ttl` seconds after its use).
        let issued = self.issued_at(nonce).is_some();
        if (self.require_server_nonce || issued) && !self.nonce_is_ours(nonce, now) {
            return Err(self.fail("Digest nonce invalid or expired", now));
        }
        let h = self.algorithm;
        let ha1 = h.hash(&format!("{username}:{realm}:{}", self.password.expose()));
        let ha2 = h.hash(&format!("{}:{digest_uri}", method.as_str()));
        let cnonce = param(&params, "cnonce");
        let nc = param(&params, "nc").unwrap_or("00000001");
        let expected = match cnonce {
            Some(cnonce) => {
                let qop = param(&params, "qop").unwrap_or("auth");
                h.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
            }
            None => h.hash(&format!("{ha1}:{nonce}:{ha2}")),
        };
        if !ct_eq(
            response.to_ascii_lowercase().as_bytes(),
            expected.as_bytes(),
        ) {
            return Err(self.fail("Invalid digest auth response", now));
        }
        let key = nonce_key(&[nonce, nc, cnonce.unwrap_or("")]);
        match self.replay.insert(key, now) {
            NonceOutcome::Fresh => Ok(()),
            NonceOutcome::Replayed => Err(self.fail("Digest nonce reused", now)),
            NonceOutcome::Full => Err(Rejection::unavailable(
                "Server nonce storage full, please retry later",
                1,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_params_parse_tokens_and_quoted_strings() {
        let p = parse_auth_params(r#"username="a\"b", nc=00000001 , qop=auth,realm="x, y""#)
            .expect("parses");
        assert_eq!(param(&p, "username"), Some("a\"b"));
        assert_eq!(param(&p, "nc"), Some("00000001"));
        assert_eq!(param(&p, "qop"), Some("auth"));
        assert_eq!(param(&p, "realm"), Some("x, y"));
        assert!(parse_auth_params(r#"username="unterminated"#).is_none());
        assert!(parse_auth_params("novalue").is_none());
    }

    #[test]
    fn rfc7616_sha256_example_response_verifies() {
        // RFC 7616 §3.9.1, SHA-256 example.
        let m = DigestMethod {
            username: Secret::new("Mufasa"),
            password: Secret::new("Circle of Life"),
            realm: "http-auth@example.org".into(),
            algorithm: DigestAlgorithm::Sha256,
            require_server_nonce: false,
            nonce_ttl: 300,
            nonce_key: Secret::new("k"),
            replay: NonceCache::new(10, 300),
        };
        let header = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, header.parse().expect("value"));
        let uri: http::Uri = "/dir/index.html".parse().expect("uri");
        assert!(m.check(&http::Method::GET, &uri, &h, 1000).is_ok());
        let again = m
            .check(&http::Method::GET, &uri, &h, 1001)
            .expect_err("replay refused");
        assert_eq!(again.detail, "Digest nonce reused");
    }

    fn server_nonce_method(cache: usize) -> DigestMethod {
        DigestMethod {
            username: Secret::new("u"),
            password: Secret::new("p"),
            realm: "r".into(),
            algorithm: DigestAlgorithm::Md5,
            require_server_nonce: true,
            nonce_ttl: 300,
            nonce_key: Secret::new("key"),
            replay: NonceCache::new(cache, replay_retention(300)),
        }
    }

    fn signed(m: &DigestMethod, nonce: &str, cnonce: &str) -> HeaderMap {
        let h = m.algorithm;
        let ha1 = h.hash("u:r:p");
        let ha2 = h.hash("POST:/webhook/d");
        let response = h.hash(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
        let value = format!(
            r#"Digest username="u", realm="r", nonce="{nonce}", uri="/webhook/d", qop=auth, nc=00000001, cnonce="{cnonce}", response="{response}""#
        );
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().expect("value"));
        headers
    }

    #[test]
    fn a_captured_header_is_refused_for_the_whole_life_of_its_nonce_under_cache_pressure_r129() {
        let uri: http::Uri = "/webhook/d".parse().expect("uri");
        let post = http::Method::POST;
        // A tiny cache under pressure: full of live entries, it refuses new nonces (503) and
        // never forgets a live one to make room.
        let m = server_nonce_method(3);
        let nonce = m.issue_nonce(1000);
        let captured = signed(&m, &nonce, "c0");
        assert!(m.check(&post, &uri, &captured, 1000).is_ok());
        for i in 1..3 {
            let other = m.issue_nonce(1000 + i);
            let h = signed(&m, &other, &format!("c{i}"));
            assert!(m.check(&post, &uri, &h, 1000 + i).is_ok());
        }
        let newcomer = signed(&m, &m.issue_nonce(1010), "cx");
        let full = m
            .check(&post, &uri, &newcomer, 1010)
            .expect_err("cache full");
        assert_eq!(full.status, http::StatusCode::SERVICE_UNAVAILABLE);
        // Replayed at every second of the nonce's life and after it: never accepted.
        for t in 1000..=1400 {
            let r = m
                .check(&post, &uri, &captured, t)
                .expect_err("replay refused");
            assert_eq!(r.status, http::StatusCode::UNAUTHORIZED, "at {t}");
            let expected = if t <= 1300 {
                "Digest nonce reused"
            } else {
                "Digest nonce invalid or expired"
            };
            assert_eq!(r.detail, expected, "at {t}");
        }
        // Once the old entries are gone the cache takes new nonces again.
        assert!(
            m.check(&post, &uri, &signed(&m, &m.issue_nonce(1400), "cy"), 1400)
                .is_ok()
        );
    }

    #[test]
    fn an_issued_nonce_keeps_its_life_when_foreign_nonces_are_allowed() {
        let uri: http::Uri = "/webhook/d".parse().expect("uri");
        let post = http::Method::POST;
        let mut m = server_nonce_method(10);
        m.require_server_nonce = false;
        let nonce = m.issue_nonce(1000);
        let captured = signed(&m, &nonce, "c0");
        assert!(m.check(&post, &uri, &captured, 1000).is_ok());
        // After the replay entry is gone, the nonce itself has expired.
        let r = m.check(&post, &uri, &captured, 1301).expect_err("expired");
        assert_eq!(r.detail, "Digest nonce invalid or expired");
        let r = m.check(&post, &uri, &captured, 5000).expect_err("expired");
        assert_eq!(r.detail, "Digest nonce invalid or expired");
    }

    #[test]
    fn issued_nonce_is_accepted_until_ttl() {
        let m = DigestMethod {
            username: Secret::new("u"),
            password: Secret::new("p"),
            realm: "r".into(),
            algorithm: DigestAlgorithm::Md5,
            require_server_nonce: true,
            nonce_ttl: 300,
            nonce_key: Secret::new("key"),
            replay: NonceCache::new(10, 300),
        };
        let n = m.issue_nonce(1000);
        assert!(m.nonce_is_ours(&n, 1000));
        assert!(m.nonce_is_ours(&n, 1300));
        assert!(!m.nonce_is_ours(&n, 1301));
        assert!(!m.nonce_is_ours("bm9uc2Vuc2U=", 1000));
    }
}
