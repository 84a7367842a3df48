//! Entry points of the fuzz targets (`fuzz/`, `docs/fuzzing.md`) and of the corpus replay test
//! (`tests/it/fuzz_corpus.rs`). Not part of the API.
//!
//! Each function takes arbitrary bytes, runs one of the relay's parsers on them and panics
//! only when a property that must hold for every input is broken. Inputs that carry an HTTP
//! request use one layout: header lines `Name: value` up to the first empty line, then the
//! body (see [`request`]).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use serde_json::{Value, json};

use crate::auth::{
    AuthBuildOptions, IpNetwork, RequestView, TrustedProxies, WebhookAuth, try_client_ip,
};
use crate::body::{BodyLimits, charset, depth, parse_json_body};
use crate::config::file::RelayFile;
use crate::config::{FlagOverrides, LoadOptions, channel_spec_from_json};

/// Names of the targets this module serves, as `fuzz/fuzz_targets/<name>.rs`.
pub const TARGETS: &[&str] = &[
    "ingest_body",
    "body_charset",
    "auth_basic",
    "auth_digest",
    "auth_jwt",
    "auth_oauth1",
    "auth_signature",
    "auth_api_key",
    "client_ip",
    "admin_channel",
    "admin_merge_patch",
    "relay_config",
];

/// Runs target `name` on `data`; `false` if this module has no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "ingest_body" => ingest_body(data),
        "body_charset" => body_charset(data),
        "auth_basic" => auth_basic(data),
        "auth_digest" => auth_digest(data),
        "auth_jwt" => auth_jwt(data),
        "auth_oauth1" => auth_oauth1(data),
        "auth_signature" => auth_signature(data),
        "auth_api_key" => auth_api_key(data),
        "client_ip" => client_ip(data),
        "admin_channel" => admin_channel(data),
        "admin_merge_patch" => admin_merge_patch(data),
        "relay_config" => relay_config(data),
        _ => return false,
    }
    true
}

/// Splits `data` into header lines (`Name: value`, up to the first empty line) and the body.
/// Lines that are not a valid header are skipped; a `:path` line sets the request target.
pub fn request(data: &[u8]) -> (HeaderMap, Uri, &[u8]) {
    let mut headers = HeaderMap::new();
    let mut uri = Uri::from_static("/webhook/hook");
    let mut rest = data;
    loop {
        let (line, tail) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = tail;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if let Some(target) = line.strip_prefix(b":path ") {
            if let Ok(u) = Uri::try_from(target) {
                uri = u;
            }
        } else if let Some(i) = line.iter().position(|b| *b == b':') {
            let value = line[i + 1..].strip_prefix(b" ").unwrap_or(&line[i + 1..]);
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(&line[..i]),
                HeaderValue::from_bytes(value),
            ) {
                headers.append(n, v);
            }
        }
        if rest.is_empty() {
            break;
        }
    }
    (headers, uri, rest)
}

/// The `Content-Types` the body targets pick from with their first byte.
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=UTF-16",
    "application/json; charset=utf-16le",
    "application/json; charset=utf-16be",
    "application/json; charset=iso-8859-1",
    "application/json; charset=windows-1252",
    "application/json; charset=us-ascii",
    "application/json; charset=\"latin-1\"",
    "text/plain; charset=koi8-r",
];

/// Ingest steps 13–14 for `data_type: json`. The first byte picks the `Content-Type` (and so
/// the charset), the rest is the body. An accepted body: every value within the depth limit,
/// the compact form is JSON that reads back to the same value, and `serde_json` accepts the
/// decoded text too (the iterative parser accepts no more than JSON).
pub fn ingest_body(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    let limits = BodyLimits {
        max_json_depth: 20,
        max_string_length: 256,
    };
    let Ok(parsed) = parse_json_body(body, Some(content_type), &limits) else {
        return;
    };
    let compact = parsed.compact.get();
    let again: Value = match serde_json::from_str(compact) {
        Ok(v) => v,
        Err(e) => panic!("compact form {compact:?} is not JSON: {e}"),
    };
    assert_eq!(again, parsed.value, "compact form reads back differently");
    assert!(
        depth::max_value_depth(compact.as_bytes(), usize::MAX) <= limits.max_json_depth,
        "accepted a body deeper than the limit"
    );
    if let Some(text) = charset::decode(body, charset::charset_of(Some(content_type))) {
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        assert!(
            serde_json::from_str::<Value>(text).is_ok(),
            "accepted a body serde_json refuses: {text:?}"
        );
    }
}

/// The charset decoders. The first line is a `Content-Type` value, the rest the body, decoded
/// with the named charset and with every other one. Latin-1 decodes any bytes to one
/// character per byte, Windows-1252 to one character per byte or refuses; UTF-8 text without BOM decodes to itself; ASCII accepts only
/// 7-bit bytes.
pub fn body_charset(data: &[u8]) {
    let (first, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let content_type = std::str::from_utf8(first).ok();
    let named = charset::charset_of(content_type);
    let _ = charset::decode(body, named);
    use charset::Charset::*;
    for cs in [Utf8, Utf16, Utf16Le, Utf16Be, Latin1, Windows1252, Ascii] {
        let decoded = charset::decode(body, cs);
        match cs {
            Latin1 => {
                let text = decoded.unwrap_or_else(|| panic!("{cs:?} refused bytes"));
                assert_eq!(text.chars().count(), body.len(), "{cs:?} length");
            }
            // Bytes Windows-1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) are refused,
            // as by the original.
            Windows1252 => {
                if let Some(text) = decoded {
                    assert_eq!(text.chars().count(), body.len(), "{cs:?} length");
                }
            }
            Utf8 => {
                if let Ok(text) = std::str::from_utf8(body)
                    && !text.starts_with('\u{feff}')
                {
                    assert_eq!(decoded.as_deref(), Some(text), "UTF-8 identity");
                }
            }
            Ascii => {
                if let Some(text) = decoded {
                    assert!(text.is_ascii(), "ASCII decoder let through {text:?}");
                }
            }
            _ => {}
        }
    }
    let _ = depth::max_value_depth(body, 100);
}

const SECRET: &str = "fuzz-secret-value";
/// The time the auth targets run at (seed inputs carry timestamps near it).
pub const NOW_SECS: u64 = 1_700_000_000;

fn build_auths(entries: Vec<Value>) -> Vec<WebhookAuth> {
    let opts = AuthBuildOptions {
        server_trusted_proxies: TrustedProxies::parse(&["10.0.0.0/8".to_owned()])
            .unwrap_or_default(),
        nonce_cache_size: 1000,
        rate_limiter_max_keys: 1000,
        strip_consumed_credentials: true,
    };
    entries
        .into_iter()
        .map(|entry| {
            let Value::Object(map) = entry else {
                panic!("auth entry is not an object");
            };
            match WebhookAuth::from_entry(&map, "webhooks.json: fuzz", &opts) {
                Ok(auth) => auth,
                Err(e) => panic!("fuzz auth entry refused: {e:?}"),
            }
        })
        .collect()
}

/// Polls a future that is expected to finish without waiting (the local auth methods).
fn ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Runs `auths` on the request in `data`: each answers pass, 400, 401, 403 or 503, and no
/// rejection ever shows the secret.
fn run_auths(auths: &[WebhookAuth], data: &[u8]) {
    let (headers, uri, body) = request(data);
    let method = Method::POST;
    let peer = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let now = UNIX_EPOCH + Duration::from_secs(NOW_SECS);
    for auth in auths {
        let client = auth.resolve_client_ip(peer, &headers).unwrap_or(peer);
        let view = RequestView {
            method: &method,
            uri: &uri,
            full_url: Some("https://relay.example.com/webhook/hook"),
            headers: &headers,
            client_ip: client,
        };
        let Some(result) = ready(auth.authenticate_at(&view, body, now)) else {
            continue;
        };
        if let Err((method_name, r)) = result {
            assert!(
                matches!(
                    r.status,
                    StatusCode::BAD_REQUEST
                        | StatusCode::UNAUTHORIZED
                        | StatusCode::FORBIDDEN
                        | StatusCode::SERVICE_UNAVAILABLE
                ),
                "{method_name} answered {}",
                r.status
            );
            // A detail may echo what the sender sent, so only a request that does not hold the
            // secret proves a leak.
            if !data.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()) {
                assert!(
                    !r.detail.contains(SECRET),
                    "{method_name} leaked the secret"
                );
                for (_, v) in &r.headers {
                    assert!(
                        !v.as_bytes()
                            .windows(SECRET.len())
                            .any(|w| w == SECRET.as_bytes())
                    );
                }
            }
        }
    }
}

macro_rules! auth_target {
    ($(#[$doc:meta])* $name:ident, [$($entry:expr),+ $(,)?]) => {
        $(#[$doc])*
        pub fn $name(data: &[u8]) {
            static AUTHS: OnceLock<Vec<WebhookAuth>> = OnceLock::new();
            let auths = AUTHS.get_or_init(|| build_auths(vec![$($entry),+]));
            run_auths(auths, data);
        }
    };
}

auth_target!(
    /// `Authorization: Basic …` (UTF-8 and Latin-1 credentials) and the plain
    /// `authorization` method (`Bearer …`).
    auth_basic,
    [
        json!({"basic_auth": {"username": "user", "password": SECRET}}),
        json!({"authorization": format!("Bearer {SECRET}")}),
    ]
);

auth_target!(
    /// `Authorization: Digest …` (auth-param lists, quoted strings, MD5 / SHA-256, with and
    /// without relay-issued nonces).
    auth_digest,
    [
        json!({"digest_auth": {"username": "user", "password": SECRET}}),
        json!({"digest_auth": {"username": "user", "password": SECRET, "algorithm": "SHA-256", "require_server_nonce": true}}),
    ]
);

auth_target!(
    /// `Authorization: Bearer <JWT>` with HMAC and RSA keys (header, claims, base64url,
    /// `exp` / `nbf` / `aud`).
    auth_jwt,
    [
        json!({"jwt": {"secret": SECRET}}),
        json!({"jwt": {"secret": SECRET, "audience": "relay", "issuer": "fuzz"}}),
        json!({"jwt": {"secret": RSA_PUBLIC_PEM, "algorithm": "RS256"}}),
    ]
);

auth_target!(
    /// `Authorization: OAuth …` (RFC 5849 parameters, percent-encoding, base string from
    /// query and form body).
    auth_oauth1,
    [json!({"oauth1": {"consumer_key": "ck", "consumer_secret": SECRET}})]
);

auth_target!(
    /// Signature headers: generic HMAC (hex and base64), GitHub, Stripe, Shopify, Slack and
    /// Standard Webhooks.
    auth_signature,
    [
        json!({"hmac": {"secret": SECRET}}),
        json!({"hmac": {"secret": SECRET, "header": "X-Signature", "encoding": "base64", "algorithm": "sha512"}}),
        json!({"hmac": {"secret": SECRET, "preset": "github"}}),
        json!({"hmac": {"secret": SECRET, "preset": "stripe"}}),
        json!({"hmac": {"secret": SECRET, "preset": "shopify"}}),
        json!({"hmac": {"secret": SECRET, "preset": "slack"}}),
        json!({"hmac": {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "preset": "standard_webhooks"}}),
    ]
);

auth_target!(
    /// API keys in a header or in the query string (`:path` line), with IP allow-lists and
    /// trusted proxies.
    auth_api_key,
    [
        json!({"header_auth": {"api_key": SECRET}}),
        json!({"query_auth": {"api_key": SECRET, "case_sensitive": true}}),
        json!({"ip_whitelist": ["192.0.2.0/24", "2001:db8::/32"], "trusted_proxies": ["10.0.0.0/8"]}),
    ]
);

/// A public test key (the tests' `auth_keys.rs`), for the RS256 JWT method.
const RSA_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAo4r+1S9/FzuSCgMeVY6n
StELgIe3NwBiuV+e3/yhKnmY3ceqBWL+ewZbDX33zeVzbkCFT+8876tAjNXa5k0k
aq0BaVOnDBOaEcAOSeOpAEzUa6JUZXjTqiUu+240GAJL1RJqAoqR0r4lU5t7Myub
mqFq9I3PsnWFUbqYaVPfhyP8YQ/+6JB6re+LjVpgMgK6J4OGznJuO4C2dFwtoY8O
a6hbGHCpdRFCOtJqDSVNCVFr7BXVYX+IyECwm8/54XeDlq+tPpuklCXEOmk9MZcc
dDeKyeytHder09AtutAE4OH46R8k14phC9xtPpH1TPWZ0uVSbgSNd4eDh6S0jmaR
MwIDAQAB
-----END PUBLIC KEY-----
";

/// `X-Forwarded-For` / `X-Real-IP` behind trusted proxies (§4), and the allow-list entry
/// parser on each header value. The result is always a normalised address; a peer that is not
/// a trusted proxy is always the client; an allow-list entry prints to text that parses back
/// to the same network.
pub fn client_ip(data: &[u8]) {
    static TRUSTED: OnceLock<TrustedProxies> = OnceLock::new();
    let trusted = TRUSTED.get_or_init(|| {
        TrustedProxies::parse(&[
            "10.0.0.0/8".to_owned(),
            "::1".to_owned(),
            "2001:db8::/48".to_owned(),
            "192.168.1.1".to_owned(),
        ])
        .unwrap_or_default()
    });
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let peers = [
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv4Addr::new(10, 9, 9, 9).to_ipv6_mapped()),
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
    ];
    let peer = peers[usize::from(pick) % peers.len()];
    let (headers, _, _) = request(rest);
    let result = try_client_ip(peer, &headers, trusted);
    let normal = crate::auth::client_ip::normalize(peer);
    if !trusted.contains(peer) {
        assert_eq!(result, Some(normal), "untrusted peer is the client");
    }
    if let Some(ip) = result {
        assert_eq!(crate::auth::client_ip::normalize(ip), ip, "not normalised");
    }
    for (_, value) in &headers {
        let Ok(text) = value.to_str() else { continue };
        for entry in text.split(',') {
            if let Ok(net) = IpNetwork::parse(entry) {
                assert_eq!(
                    IpNetwork::parse(&net.to_string()),
                    Ok(net),
                    "network {entry:?}"
                );
            }
        }
    }
}

/// `POST /admin/…/channels` body: checked like a `[[channels]]` entry. An accepted
/// definition is accepted again (with the same name) when given a second time.
pub fn admin_channel(data: &[u8]) {
    static FILE: OnceLock<RelayFile> = OnceLock::new();
    let file = FILE.get_or_init(RelayFile::default);
    let _ = crate::http::admin::channels::parse_grace(data);
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok((spec, _)) = channel_spec_from_json(map.clone(), file) {
        match channel_spec_from_json(map, file) {
            Ok((again, _)) => assert_eq!(again.name, spec.name),
            Err(e) => panic!("accepted definition refused the second time: {e:?}"),
        }
    }
}

/// `PATCH /admin/…/channels/{name}`: the first line is the stored definition, the rest the
/// RFC 7396 merge patch. Applying a patch twice changes nothing more; no `null` of the patch
/// is left in an object it merged into; the result is checked like a channel definition.
pub fn admin_merge_patch(data: &[u8]) {
    let (first, rest) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => return,
    };
    let Ok(target) = serde_json::from_slice::<Value>(first) else {
        return;
    };
    let Ok(patch) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    let mut once = target;
    crate::http::admin::lifecycle::merge_patch(&mut once, &patch);
    let mut twice = once.clone();
    crate::http::admin::lifecycle::merge_patch(&mut twice, &patch);
    assert_eq!(once, twice, "merge patch is not idempotent");
    if let (Value::Object(result), Value::Object(p)) = (&once, &patch) {
        for (k, v) in p {
            if v.is_null() {
                assert!(!result.contains_key(k), "null left key {k:?}");
            }
        }
        let _ = channel_spec_from_json(result.clone(), &RelayFile::default());
    }
}

/// A scratch directory of this process for the config files of [`relay_config`].
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wc-fuzz-relay-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

/// The relay configuration loader on file text. The first byte picks the file: `relay.toml`,
/// `relay.json`, or an original `webhooks.json` (named by `--webhooks-config`); the rest is its
/// text. Loading runs `{$VAR}` substitution against a fixed environment. An accepted
/// configuration loads again to the same channels and webhooks.
pub fn relay_config(data: &[u8]) {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let dir = scratch();
    let (name, webhooks) = match pick % 3 {
        0 => ("relay.toml", false),
        1 => ("relay.json", false),
        _ => ("webhooks.json", true),
    };
    let path = dir.join(name);
    if std::fs::write(&path, text).is_err() {
        return;
    }
    let env = vec![
        ("HOST".to_owned(), "127.0.0.1".to_owned()),
        ("TOKEN".to_owned(), "fuzz-token-0123456789".to_owned()),
        ("SECRET".to_owned(), SECRET.to_owned()),
    ];
    let options = if webhooks {
        LoadOptions {
            config_path: None,
            flags: FlagOverrides {
                webhooks_config: Some(path.display().to_string()),
                ..FlagOverrides::default()
            },
            env,
        }
    } else {
        LoadOptions {
            config_path: Some(path),
            flags: FlagOverrides::default(),
            env,
        }
    };
    let first = crate::config::load(&options);
    let second = crate::config::load(&options);
    match (first, second) {
        (Ok(a), Ok(b)) => {
            let names = |c: &crate::config::RelayConfig| {
                c.channels
                    .iter()
                    .map(|ch| ch.name.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(names(&a), names(&b), "a second load differs");
        }
        (Err(a), Err(b)) => {
            assert!(!a.errors.is_empty(), "refused without an error");
            assert_eq!(a.errors, b.errors, "a second load differs");
        }
        _ => panic!("a second load of the same file changed the verdict"),
    }
}
