//! Inbound validation of ingest requests (`docs/reference/auth-methods.md`).
//!
//! A [`WebhookAuth`] is built once per webhook entry when the configuration loads
//! ([`WebhookAuth::from_entry`]) and then used per request, in the order of `docs/reference/http-api.md` §1.2:
//!
//! 1. step 5: [`crate::body::check_headers`];
//! 2. step 9: [`WebhookAuth::resolve_client_ip`] then [`WebhookAuth::check_ip`];
//! 3. step 10, before the body is read: [`WebhookAuth::authenticate_before_body`] (the methods
//!    that need neither the body nor the network);
//! 4. step 11, only when [`WebhookAuth::authenticated_before_body`]: the rate limits (item 6);
//! 5. step 13, after the body: [`WebhookAuth::authenticate_after_body`] (both phases together:
//!    [`WebhookAuth::authenticate`], or [`WebhookAuth::authenticate_at`], which also names the
//!    failing method for `webhook_relay_auth_failures_total`), with
//!    [`RequestView::full_url`] from [`request_url`];
//! 6. step 14 unless done at step 11: [`WebhookAuth::check_rate_limit`]; if the request fails
//!    later, [`WebhookAuth::refund_rate_limit`] so rejected requests change nothing;
//! 7. steps 15–16: [`crate::body::parse_json_body`];
//! 8. step 17: [`WebhookAuth::validate_schema`];
//! 9. before storing: remove [`AuthPass::consumed_headers`] (already empty when stripping is
//!    off for the webhook) and apply [`WebhookAuth::credential_cleanup`].

mod api_key;
mod basic;
mod bearer;
pub mod cleanup;
pub mod client_ip;
mod codec;
mod config;
pub(crate) mod ct;
mod digest;
mod hmac_sig;
mod jwt;
mod nonce_cache;
mod oauth1;
mod oauth2;
pub mod outbound;
mod rate_limit;
mod recaptcha;
pub mod rejection;
mod schema;

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName};
use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::Secret;

pub use cleanup::{CleanupMode, CredentialCleanup};
pub use client_ip::{IpList, IpNetwork, TrustedProxies, client_ip, try_client_ip};
pub use ct::ct_eq;
pub use oauth1::request_url;
pub use rejection::Rejection;

use config::{Block, Diagnostics, is_empty_value};

/// Settings from the relay configuration that webhook entries need when they are built.
#[derive(Debug, Clone)]
pub struct AuthBuildOptions {
    /// `server.trusted_proxies`; a webhook's `trusted_proxies` adds to these.
    pub server_trusted_proxies: TrustedProxies,
    /// `limits.nonce_cache_size` (Digest and OAuth 1.0 replay caches).
    pub nonce_cache_size: usize,
    /// `limits.rate_limiter_max_keys`.
    pub rate_limiter_max_keys: usize,
    /// `ingest.strip_consumed_credentials`, the default of the webhook-level key.
    pub strip_consumed_credentials: bool,
}

impl Default for AuthBuildOptions {
    fn default() -> Self {
        AuthBuildOptions {
            server_trusted_proxies: TrustedProxies::default(),
            nonce_cache_size: 100_000,
            rate_limiter_max_keys: 100_000,
            strip_consumed_credentials: true,
        }
    }
}

/// The parts of an ingest request the checks look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The request method.
    pub method: &'a http::Method,
    /// The request target (path and query).
    pub uri: &'a http::Uri,
    /// `public_base_url` + path + query, or the URL the request was made to as seen through
    /// trusted proxies (OAuth 1.0 base string). `None`: built from `Host` with `http`.
    pub full_url: Option<&'a str>,
    /// The received headers.
    pub headers: &'a HeaderMap,
    /// The client IP (§4), from [`WebhookAuth::resolve_client_ip`] or [`client_ip`].
    pub client_ip: IpAddr,
}

/// A request that passed authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthPass {
    /// Credential headers the relay consumed, to remove from the relayed headers (§10.1).
    /// Empty when `strip_consumed_credentials` is off. Signature headers are never listed.
    pub consumed_headers: Vec<HeaderName>,
}

impl AuthPass {
    /// Removes the consumed credential headers from `headers`.
    pub fn strip_headers(&self, headers: &mut HeaderMap) {
        for name in &self.consumed_headers {
            headers.remove(name);
        }
    }
}

/// When a method runs relative to reading the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    BeforeBody,
    AfterBody,
}

/// One configured method, in evaluation order (§1.2).
#[derive(Debug)]
enum Method {
    Basic(basic::BasicMethod),
    Digest(Box<digest::DigestMethod>),
    Jwt(Box<jwt::JwtMethod>),
    OAuth1(Box<oauth1::OAuth1>),
    Authorization(bearer::AuthorizationMethod),
    Hmac(hmac_sig::HmacMethod),
    Query(api_key::QueryAuthMethod),
    Header(api_key::HeaderAuthMethod),
    OAuth2(Box<oauth2::OAuth2Method>),
    Recaptcha(Box<recaptcha::RecaptchaMethod>),
}

impl Method {
    /// The config key, used in logs and as the metrics `method` label.
    fn name(&self) -> &'static str {
        match self {
            Method::Basic(_) => "basic_auth",
            Method::Digest(_) => "digest_auth",
            Method::Jwt(_) => "jwt",
            Method::OAuth1(_) => "oauth1",
            Method::Authorization(_) => "authorization",
            Method::Hmac(_) => "hmac",
            Method::Query(_) => "query_auth",
            Method::Header(_) => "header_auth",
            Method::OAuth2(_) => "oauth2",
            Method::Recaptcha(_) => "recaptcha",
        }
    }

    /// When the method runs: before the body when it needs neither the body nor the network.
    fn phase(&self) -> Phase {
        match self {
            Method::Basic(_)
            | Method::Digest(_)
            | Method::Jwt(_)
            | Method::Authorization(_)
            | Method::Query(_)
            | Method::Header(_) => Phase::BeforeBody,
            Method::OAuth1(_) | Method::Hmac(_) | Method::OAuth2(_) | Method::Recaptcha(_) => {
                Phase::AfterBody
            }
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Method::Basic(_) => 0,
            Method::Digest(_) => 1,
            Method::Jwt(_) => 2,
            Method::OAuth1(_) => 3,
            Method::Authorization(_) => 4,
            Method::Hmac(_) => 5,
            Method::Query(_) => 6,
            Method::Header(_) => 7,
            Method::OAuth2(_) => 8,
            Method::Recaptcha(_) => 9,
        }
    }
}

/// The inbound validation of one webhook, built once at config load.
#[derive(Debug)]
pub struct WebhookAuth {
    ip_whitelist: Option<IpList>,
    trusted_proxies: TrustedProxies,
    methods: Vec<Method>,
    rate_limit: Option<rate_limit::RateLimiter>,
    schema: Option<schema::CompiledSchema>,
    cleanup: Option<CredentialCleanup>,
    consumed: Vec<HeaderName>,
    warnings: Vec<String>,
    /// The entry's path, for logs.
    label: String,
}

/// Keys of a webhook entry this module reads (shared with the connector, which ignores them).
pub use webhook_connect_protocol::credentials::AUTH_KEYS;

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

impl WebhookAuth {
    /// A webhook without any inbound checks.
    pub fn none() -> Self {
        WebhookAuth {
            ip_whitelist: None,
            trusted_proxies: TrustedProxies::default(),
            methods: Vec::new(),
            rate_limit: None,
            schema: None,
            cleanup: None,
            consumed: Vec::new(),
            warnings: Vec::new(),
            label: String::new(),
        }
    }

    /// Builds the checks of one webhook entry (already `{$VAR}`-substituted). `path` names the
    /// entry in errors (e.g. `webhooks.json: stripe`); each error is `"<path>.<key>: <problem>"`.
    /// Keys that are not inbound-validation keys are ignored.
    pub fn from_entry(
        entry: &Map<String, Value>,
        path: &str,
        opts: &AuthBuildOptions,
    ) -> Result<WebhookAuth, Vec<String>> {
        let mut d = Diagnostics::default();
        let mut auth = WebhookAuth::none();
        auth.label = path.to_string();

        for key in AUTH_KEYS {
            if let Some(v) = entry.get(key)
                && is_empty_value(v)
                && key != "trusted_proxies"
            {
                d.errors.push(format!(
                    "{path}.{key}: empty configuration; remove the key to disable this method"
                ));
            }
        }
        let present = |key: &str| entry.get(key).filter(|v| !is_empty_value(v));
        let json_data = match entry.get("data_type") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s == "json",
            Some(_) => false,
        };

        // trusted_proxies and ip_whitelist (§4).
        auth.trusted_proxies = opts.server_trusted_proxies.clone();
        if let Some(v) = entry.get("trusted_proxies").filter(|v| !v.is_null()) {
            let p = format!("{path}.trusted_proxies");
            let list = config::str_list(&p, v, false, &mut d);
            match TrustedProxies::parse(&list) {
                Ok(t) => auth.trusted_proxies = auth.trusted_proxies.merged(&t),
                Err(e) => d.errors.push(format!("{p}: {e}")),
            }
        }
        if let Some(v) = present("ip_whitelist") {
            let p = format!("{path}.ip_whitelist");
            let list = config::str_list(&p, v, false, &mut d);
            match IpList::parse(&list) {
                Ok(l) => auth.ip_whitelist = Some(l),
                Err(e) => d.errors.push(format!("{p}: {e}")),
            }
        }

        // authorization (§2.1).
        if let Some(v) = present("authorization") {
            match v {
                // `"Bearer {$UNSET:}"` must not turn into "accept a bare `Bearer`".
                Value::String(s)
                    if s.trim().eq_ignore_ascii_case("bearer")
                        || bearer::split_scheme(s.trim()).is_some_and(|(scheme, token)| {
                            scheme.eq_ignore_ascii_case("bearer") && token.trim().is_empty()
                        }) =>
                {
                    d.errors.push(format!(
                        "{path}.authorization: empty configuration; remove the key to disable this method"
                    ));
                }
                Value::String(s) => auth
                    .methods
                    .push(Method::Authorization(bearer::AuthorizationMethod::new(s))),
                _ => d
                    .errors
                    .push(format!("{path}.authorization: expected a string")),
            }
        }
        if let Some(v) = present("basic_auth")
            && let Some(b) = Block::object(path, "basic_auth", v, &mut d)
        {
            b.warn_unknown(&["username", "password"], &mut d);
            let username = b.req_secret("username", &mut d);
            let password = b.req_secret("password", &mut d);
            if let (Some(username), Some(password)) = (username, password) {
                auth.methods
                    .push(Method::Basic(basic::BasicMethod { username, password }));
            }
        }
        if let Some(v) = present("digest_auth")
            && let Some(b) = Block::object(path, "digest_auth", v, &mut d)
        {
            build_digest(&b, opts, &mut d, &mut auth);
        }
        if let Some(v) = present("jwt")
            && let Some(b) = Block::object(path, "jwt", v, &mut d)
        {
            build_jwt(&b, &mut d, &mut auth);
        }
        if let Some(v) = present("oauth1")
            && let Some(b) = Block::object(path, "oauth1", v, &mut d)
        {
            build_oauth1(&b, opts, &mut d, &mut auth);
        }
        if let Some(v) = present("hmac")
            && let Some(b) = Block::object(path, "hmac", v, &mut d)
        {
            build_hmac(&b, &mut d, &mut auth);
        }
        if let Some(v) = present("query_auth")
            && let Some(b) = Block::object(path, "query_auth", v, &mut d)
        {
            b.warn_unknown(&["api_key", "parameter_name", "case_sensitive"], &mut d);
            let api_key = b.req_secret("api_key", &mut d);
            let name = b
                .opt_str("parameter_name", &mut d)
                .unwrap_or_else(|| "api_key".into());
            if !api_key::valid_parameter_name(&name) {
                b.error(
                    "parameter_name",
                    "must match ^[A-Za-z0-9_.-]{1,100}$",
                    &mut d,
                );
            }
            let case_sensitive = b.bool("case_sensitive", false, &mut d);
            if let Some(api_key) = api_key {
                auth.methods.push(Method::Query(api_key::QueryAuthMethod {
                    api_key,
                    parameter_name: name,
                    case_sensitive,
                }));
            }
        }
        if let Some(v) = present("header_auth")
            && let Some(b) = Block::object(path, "header_auth", v, &mut d)
        {
            b.warn_unknown(&["api_key", "header_name", "case_sensitive"], &mut d);
            let api_key = b.req_secret("api_key", &mut d);
            let display = b
                .opt_str("header_name", &mut d)
                .unwrap_or_else(|| "X-API-Key".into());
            let header = HeaderName::from_bytes(display.as_bytes());
            if header.is_err() {
                b.error("header_name", "must be a valid HTTP header name", &mut d);
            }
            let case_sensitive = b.bool("case_sensitive", false, &mut d);
            if let (Some(api_key), Ok(header)) = (api_key, header) {
                auth.methods.push(Method::Header(api_key::HeaderAuthMethod {
                    api_key,
                    header_display: display,
                    header,
                    case_sensitive,
                }));
            }
        }
        if let Some(v) = present("oauth2")
            && let Some(b) = Block::object(path, "oauth2", v, &mut d)
        {
            build_oauth2(&b, &mut d, &mut auth);
        }
        if let Some(v) = present("recaptcha")
            && let Some(b) = Block::object(path, "recaptcha", v, &mut d)
        {
            build_recaptcha(&b, json_data, &mut d, &mut auth);
        }
        if let Some(v) = present("rate_limit")
            && let Some(b) = Block::object(path, "rate_limit", v, &mut d)
        {
            b.warn_unknown(&["max_requests", "window_seconds", "key"], &mut d);
            let max = b.u64_in("max_requests", 100, 0, 1_000_000, &mut d);
            let window = b.u64_in("window_seconds", 60, 1, 86_400, &mut d);
            let key = match b.opt_str("key", &mut d).as_deref() {
                None | Some("webhook") => rate_limit::RateKey::Webhook,
                Some("client_ip") => rate_limit::RateKey::ClientIp,
                Some(_) => {
                    b.error("key", "must be \"webhook\" or \"client_ip\"", &mut d);
                    rate_limit::RateKey::Webhook
                }
            };
            auth.rate_limit = Some(rate_limit::RateLimiter::new(
                max,
                window,
                key,
                opts.rate_limiter_max_keys,
            ));
        }
        if let Some(v) = present("json_schema") {
            if !json_data {
                d.errors
                    .push(format!("{path}.json_schema: requires data_type \"json\""));
            }
            match schema::CompiledSchema::compile(v) {
                Ok(s) => auth.schema = Some(s),
                Err(e) => d.errors.push(format!("{path}.json_schema: {e}")),
            }
        }
        if let Some(v) = entry.get("credential_cleanup").filter(|v| !v.is_null()) {
            auth.cleanup = build_cleanup(path, v, &mut d);
        }
        let strip = match entry.get("strip_consumed_credentials") {
            None | Some(Value::Null) => opts.strip_consumed_credentials,
            Some(v) => match webhook_connect_protocol::config_values::lenient::bool(v) {
                Ok(b) => b,
                Err(_) => {
                    d.errors.push(format!(
                        "{path}.strip_consumed_credentials: expected a boolean"
                    ));
                    true
                }
            },
        };

        auth.methods.sort_by_key(Method::rank);
        if strip {
            for m in &auth.methods {
                let name = match m {
                    Method::Basic(_)
                    | Method::Digest(_)
                    | Method::Jwt(_)
                    | Method::OAuth1(_)
                    | Method::Authorization(_)
                    | Method::OAuth2(_) => Some(http::header::AUTHORIZATION),
                    Method::Header(h) => Some(h.header.clone()),
                    Method::Recaptcha(r) => match &r.source {
                        recaptcha::TokenSource::Header(h, _) => Some(h.clone()),
                        recaptcha::TokenSource::Body(_) => None,
                    },
                    Method::Hmac(_) | Method::Query(_) => None,
                };
                if let Some(name) = name
                    && !auth.consumed.contains(&name)
                {
                    auth.consumed.push(name);
                }
            }
        }
        auth.warnings = d.warnings;
        if d.errors.is_empty() {
            Ok(auth)
        } else {
            Err(d.errors)
        }
    }

    /// Warnings found while building (unknown keys inside method blocks, risky settings).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The trusted proxies for this webhook (server list plus the webhook's own).
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }

    /// True when an `ip_whitelist` is configured.
    pub fn has_ip_whitelist(&self) -> bool {
        self.ip_whitelist.is_some()
    }

    /// True when any authentication method is configured.
    pub fn has_authentication(&self) -> bool {
        !self.methods.is_empty()
    }

    /// True when a `json_schema` is configured.
    pub fn has_schema(&self) -> bool {
        self.schema.is_some()
    }

    /// The enabled credential cleanup (§10.2), applied after authentication and before
    /// storing: [`CredentialCleanup::clean_headers`] / [`CredentialCleanup::clean_payload`].
    /// When it is set, v2 messages carry no raw `body` (`body_omitted: true`).
    pub fn credential_cleanup(&self) -> Option<&CredentialCleanup> {
        self.cleanup.as_ref()
    }

    /// The client IP for this webhook (§4), with its trusted proxies. When it cannot be
    /// determined: `403 Could not determine client IP` if an allow-list is configured,
    /// otherwise the peer.
    pub fn resolve_client_ip(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Result<IpAddr, Rejection> {
        match try_client_ip(peer, headers, &self.trusted_proxies) {
            Some(ip) => Ok(ip),
            None if self.ip_whitelist.is_some() => {
                Err(Rejection::forbidden("Could not determine client IP"))
            }
            None => Ok(client_ip::normalize(peer)),
        }
    }

    /// Step 9: the `ip_whitelist` (403 `IP <ip> not in whitelist`, R-09).
    pub fn check_ip(&self, client: IpAddr) -> Result<(), Rejection> {
        match &self.ip_whitelist {
            Some(list) if !list.contains(client) => Err(Rejection::forbidden(format!(
                "IP {} not in whitelist",
                client_ip::normalize(client)
            ))),
            _ => Ok(()),
        }
    }

    /// Step 11: every configured authentication method, in the order of §1.2.
    pub async fn authenticate(
        &self,
        req: &RequestView<'_>,
        body: &[u8],
    ) -> Result<AuthPass, Rejection> {
        self.authenticate_at(req, body, SystemTime::now())
            .await
            .map_err(|(_, r)| r)
    }

    /// Like [`authenticate`](Self::authenticate) at a given time; a failure also names the
    /// method (the config key, for the `webhook_relay_auth_failures_total` metric). Runs both
    /// phases: [`authenticate_before_body`](Self::authenticate_before_body), then
    /// [`authenticate_after_body`](Self::authenticate_after_body).
    pub async fn authenticate_at(
        &self,
        req: &RequestView<'_>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<AuthPass, (&'static str, Rejection)> {
        self.authenticate_before_body(req, now).await?;
        self.authenticate_after_body(req, body, now).await
    }

    /// The methods that need neither the body nor the network (`basic_auth`, `digest_auth`,
    /// `jwt`, `authorization`, `query_auth`, `header_auth`), in the order of §1.2. The relay
    /// runs them before it reads the body, so a request with a wrong credential never has its
    /// body read or buffered.
    pub async fn authenticate_before_body(
        &self,
        req: &RequestView<'_>,
        now: SystemTime,
    ) -> Result<(), (&'static str, Rejection)> {
        self.run_methods(req, &[], unix_seconds(now), Phase::BeforeBody)
            .await
    }

    /// The other methods, in the order of §1.2: those that read the body (`oauth1`, `hmac`),
    /// then those that call out over the network (`oauth2`, `recaptcha`).
    pub async fn authenticate_after_body(
        &self,
        req: &RequestView<'_>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<AuthPass, (&'static str, Rejection)> {
        self.run_methods(req, body, unix_seconds(now), Phase::AfterBody)
            .await?;
        Ok(AuthPass {
            consumed_headers: self.consumed.clone(),
        })
    }

    /// True when every configured method runs before the body
    /// ([`authenticate_before_body`](Self::authenticate_before_body)): authentication is then
    /// complete before the body is read, and the rate limits may be checked there too.
    pub fn authenticated_before_body(&self) -> bool {
        self.methods.iter().all(|m| m.phase() == Phase::BeforeBody)
    }

    async fn run_methods(
        &self,
        req: &RequestView<'_>,
        body: &[u8],
        now: i64,
        phase: Phase,
    ) -> Result<(), (&'static str, Rejection)> {
        for m in self.methods.iter().filter(|m| m.phase() == phase) {
            let result = match m {
                Method::Basic(b) => b.check(req.headers),
                Method::Digest(dg) => dg.check(req.method, req.uri, req.headers, now),
                Method::Jwt(j) => j.check(req.headers, now),
                Method::OAuth1(o) => o.check(
                    &oauth1::OAuth1Request {
                        method: req.method,
                        uri: req.uri,
                        full_url: req.full_url,
                        headers: req.headers,
                        body,
                    },
                    now,
                ),
                Method::Authorization(a) => a.check(req.headers),
                Method::Hmac(h) => h.check(req.headers, body, now),
                Method::Query(q) => q.check(req.uri),
                Method::Header(h) => h.check(req.headers),
                Method::OAuth2(o) => o.check(req.headers, now).await,
                Method::Recaptcha(r) => r.check(req.headers, body, req.client_ip).await,
            };
            if let Err(r) = result {
                tracing::info!(
                    entry = %self.label,
                    method = m.name(),
                    client_ip = %req.client_ip,
                    status = r.status.as_u16(),
                    detail = %r.detail,
                    "Webhook authentication failed"
                );
                return Err((m.name(), r));
            }
        }
        Ok(())
    }

    /// Step 12: the webhook's `rate_limit` (429 with `Retry-After ≥ 1`, R-07). Call only after
    /// [`authenticate`](Self::authenticate) passed; `client` is used when `key = "client_ip"`.
    pub fn check_rate_limit(&self, client: IpAddr, now: Instant) -> Result<(), Rejection> {
        match &self.rate_limit {
            Some(l) => l.check(client, now),
            None => Ok(()),
        }
    }

    /// Takes back the admission [`check_rate_limit`](Self::check_rate_limit) made at `now` for
    /// a request that failed afterwards (parse, schema, queue full, …), so rejected requests
    /// leave the webhook's budget unchanged. Pass the same `client` and `now`.
    pub fn refund_rate_limit(&self, client: IpAddr, now: Instant) {
        if let Some(l) = &self.rate_limit {
            l.refund(client, now);
        }
    }

    /// Step 15: the `json_schema` (400 `JSON schema validation failed`, R-08).
    pub fn validate_schema(&self, payload: &Value) -> Result<(), Rejection> {
        match &self.schema {
            Some(s) => s.validate(payload),
            None => Ok(()),
        }
    }
}

fn build_digest(
    b: &Block<'_>,
    opts: &AuthBuildOptions,
    d: &mut Diagnostics,
    auth: &mut WebhookAuth,
) {
    b.warn_unknown(
        &[
            "username",
            "password",
            "realm",
            "algorithm",
            "qop",
            "require_server_nonce",
            "nonce_ttl_seconds",
        ],
        d,
    );
    let username = b.req_secret("username", d);
    let password = b.req_secret("password", d);
    let realm = b
        .opt_str("realm", d)
        .unwrap_or_else(|| "Webhook API".into());
    let algorithm = match b.opt_str("algorithm", d) {
        None => Some(digest::DigestAlgorithm::Md5),
        Some(a) => {
            let parsed = digest::DigestAlgorithm::parse(&a);
            if parsed.is_none() {
                b.error("algorithm", "must be \"MD5\" or \"SHA-256\"", d);
            }
            parsed
        }
    };
    if let Some(q) = b.opt_str("qop", d)
        && q != "auth"
    {
        b.error("qop", "must be \"auth\"", d);
    }
    // Only nonces the relay issued have a bounded life, so only they make replay impossible
    // for good; foreign nonces are an opt-in for senders that cannot answer a challenge.
    let require_server_nonce = b.bool("require_server_nonce", true, d);
    if !require_server_nonce {
        d.warnings.push(format!(
            "{}.require_server_nonce: false accepts nonces the relay did not issue; a captured header with such a nonce is refused as a replay only for nonce_ttl_seconds after its use",
            b.path
        ));
    }
    let ttl = b.u64_in("nonce_ttl_seconds", 300, 10, 3600, d);
    let ttl = i64::try_from(ttl).unwrap_or(300);
    if let (Some(username), Some(password), Some(algorithm)) = (username, password, algorithm) {
        let key: [u8; 32] = rand::random();
        auth.methods
            .push(Method::Digest(Box::new(digest::DigestMethod {
                username,
                password,
                realm,
                algorithm,
                require_server_nonce,
                nonce_ttl: ttl,
                nonce_key: Secret::new(hex::encode(key)),
                replay: nonce_cache::NonceCache::new(
                    opts.nonce_cache_size,
                    digest::replay_retention(ttl),
                ),
            })));
    }
}

fn build_jwt(b: &Block<'_>, d: &mut Diagnostics, auth: &mut WebhookAuth) {
    b.warn_unknown(
        &[
            "secret",
            "algorithm",
            "issuer",
            "audience",
            "verify_exp",
            "leeway_seconds",
            "required_claims",
        ],
        d,
    );
    let secret = b.req_secret("secret", d);
    let alg_text = b.opt_str("algorithm", d).unwrap_or_else(|| "HS256".into());
    let algorithm = jwt::parse_algorithm(&alg_text);
    if algorithm.is_none() {
        b.error(
            "algorithm",
            format!("unsupported or unsafe algorithm {alg_text:?}"),
            d,
        );
    }
    let issuer = b.opt_str("issuer", d);
    let audience = b.opt_str("audience", d);
    let verify_exp = b.bool("verify_exp", true, d);
    let leeway = i64::try_from(b.u64_in("leeway_seconds", 0, 0, 300, d)).unwrap_or(0);
    let required_claims = b.str_list("required_claims", false, d);
    if let (Some(secret), Some(algorithm)) = (secret, algorithm) {
        match jwt::JwtKeys::new(secret.expose(), &[algorithm]) {
            Ok(keys) => auth.methods.push(Method::Jwt(Box::new(jwt::JwtMethod {
                algorithm,
                keys,
                issuer,
                audience,
                verify_exp,
                leeway,
                required_claims,
            }))),
            Err(e) => b.error("secret", e, d),
        }
    }
}

fn build_oauth1(
    b: &Block<'_>,
    opts: &AuthBuildOptions,
    d: &mut Diagnostics,
    auth: &mut WebhookAuth,
) {
    b.warn_unknown(
        &[
            "consumer_key",
            "consumer_secret",
            "token_secret",
            "signature_method",
            "verify_timestamp",
            "timestamp_window",
            "verify_nonce",
            "base_uri_mode",
        ],
        d,
    );
    let consumer_key = b.req_secret("consumer_key", d);
    let consumer_secret = b.req_secret("consumer_secret", d);
    let token_secret = Secret::new(b.opt_str("token_secret", d).unwrap_or_default());
    let method_text = b
        .opt_str("signature_method", d)
        .unwrap_or_else(|| "HMAC-SHA1".into());
    let method = oauth1::OAuth1Method::parse(&method_text);
    if method.is_none() {
        b.error(
            "signature_method",
            format!("unsupported or unsafe signature method {method_text:?}"),
            d,
        );
    }
    let verify_timestamp = b.bool("verify_timestamp", true, d);
    let window = i64::try_from(b.u64_in("timestamp_window", 300, 1, 3600, d)).unwrap_or(300);
    let verify_nonce = b.bool("verify_nonce", true, d);
    let mode = match b.opt_str("base_uri_mode", d).as_deref() {
        None | Some("full") => oauth1::BaseUriMode::Full,
        Some("path") => oauth1::BaseUriMode::Path,
        Some(_) => {
            b.error("base_uri_mode", "must be \"full\" or \"path\"", d);
            oauth1::BaseUriMode::Full
        }
    };
    if let (Some(consumer_key), Some(consumer_secret), Some(method)) =
        (consumer_key, consumer_secret, method)
    {
        auth.methods.push(Method::OAuth1(Box::new(oauth1::OAuth1 {
            consumer_key,
            consumer_secret,
            token_secret,
            method,
            verify_timestamp,
            timestamp_window: window,
            verify_nonce,
            base_uri_mode: mode,
            nonces: nonce_cache::NonceCache::new(opts.nonce_cache_size, window + 60),
        })));
    }
}

fn build_hmac(b: &Block<'_>, d: &mut Diagnostics, auth: &mut WebhookAuth) {
    b.warn_unknown(
        &[
            "secret",
            "header",
            "algorithm",
            "encoding",
            "preset",
            "timestamp_tolerance_seconds",
        ],
        d,
    );
    let secret = b.req_secret("secret", d);
    let tolerance =
        i64::try_from(b.u64_in("timestamp_tolerance_seconds", 300, 0, 86_400, d)).unwrap_or(300);
    let preset = b.opt_str("preset", d);
    let kind = if let Some(p) = preset {
        for k in ["header", "encoding", "algorithm"] {
            if b.has(k) {
                b.error(k, "cannot be set together with preset", d);
            }
        }
        match hmac_sig::Preset::parse(&p) {
            Some(p) => Some(hmac_sig::HmacKind::Preset(p)),
            None => {
                b.error(
                    "preset",
                    "must be one of github, stripe, shopify, slack, standard_webhooks",
                    d,
                );
                None
            }
        }
    } else {
        let display = b
            .opt_str("header", d)
            .unwrap_or_else(|| "X-HMAC-Signature".into());
        let header = HeaderName::from_bytes(display.as_bytes()).ok();
        if header.is_none() {
            b.error("header", "must be a valid HTTP header name", d);
        }
        let alg_text = b.opt_str("algorithm", d).unwrap_or_else(|| "sha256".into());
        let algorithm = hmac_sig::HmacAlgorithm::parse(&alg_text);
        if algorithm.is_none() {
            b.error("algorithm", "must be sha1, sha256 or sha512", d);
        }
        let encoding = match b.opt_str("encoding", d).as_deref() {
            None | Some("hex") => Some(hmac_sig::SigEncoding::Hex),
            Some("base64") => Some(hmac_sig::SigEncoding::Base64),
            Some(_) => {
                b.error("encoding", "must be \"hex\" or \"base64\"", d);
                None
            }
        };
        match (header, algorithm, encoding) {
            (Some(header), Some(algorithm), Some(encoding)) => Some(hmac_sig::HmacKind::Generic {
                header,
                header_display: display,
                algorithm,
                encoding,
            }),
            _ => None,
        }
    };
    let (Some(secret), Some(kind)) = (secret, kind) else {
        return;
    };
    let mut key_bytes_b64 = None;
    if matches!(
        kind,
        hmac_sig::HmacKind::Preset(hmac_sig::Preset::StandardWebhooks)
    ) {
        match hmac_sig::decode_standard_webhooks_secret(secret.expose()) {
            Some(k) => key_bytes_b64 = Some(hmac_sig::KeyBytes(k)),
            None => {
                b.error(
                    "secret",
                    "must be base64 (after an optional whsec_ prefix)",
                    d,
                );
                return;
            }
        }
    }
    auth.methods.push(Method::Hmac(hmac_sig::HmacMethod {
        kind,
        key: secret,
        key_bytes_b64,
        tolerance,
    }));
}

fn build_oauth2(b: &Block<'_>, d: &mut Diagnostics, auth: &mut WebhookAuth) {
    b.warn_unknown(
        &[
            "token_type",
            "introspection_endpoint",
            "client_id",
            "client_secret",
            "required_scope",
            "validate_token",
            "jwt_secret",
            "jwt_algorithms",
            "audience",
            "issuer",
            "verify_exp",
            "cache_seconds",
            "allowed_hosts",
        ],
        d,
    );
    let token_type = b
        .opt_str("token_type", d)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "Bearer".into());
    let endpoint = b
        .opt_str("introspection_endpoint", d)
        .filter(|e| !e.is_empty());
    let client_id = b.opt_secret("client_id", d);
    let client_secret = b.opt_secret("client_secret", d);
    let required_scope = b.str_list("required_scope", true, d);
    let validate_token = b.bool("validate_token", true, d);
    let jwt_secret = b.opt_secret("jwt_secret", d);
    let alg_texts = if b.has("jwt_algorithms") {
        b.str_list("jwt_algorithms", false, d)
    } else {
        vec!["HS256".into(), "RS256".into()]
    };
    let mut algorithms = Vec::new();
    for a in &alg_texts {
        match jwt::parse_algorithm(a) {
            Some(alg) => algorithms.push(alg),
            None => b.error(
                "jwt_algorithms",
                format!("unsupported or unsafe algorithm {a:?}"),
                d,
            ),
        }
    }
    let audience = b.opt_str("audience", d);
    let issuer = b.opt_str("issuer", d);
    let verify_exp = b.bool("verify_exp", true, d);
    let cache_seconds = i64::try_from(b.u64_in("cache_seconds", 60, 0, 3600, d)).unwrap_or(60);
    let allowed_hosts: Vec<String> = b
        .str_list("allowed_hosts", false, d)
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();

    if endpoint.is_none() && jwt_secret.is_none() && validate_token {
        b.error(
            "introspection_endpoint",
            "one of introspection_endpoint, jwt_secret or validate_token: false is required",
            d,
        );
        return;
    }
    if !validate_token && endpoint.is_none() && jwt_secret.is_none() {
        d.warnings.push(format!(
            "{}.validate_token: false accepts any token",
            b.path
        ));
    }
    let mut introspection = None;
    if let Some(url) = endpoint {
        match check_endpoint_url(&url, &allowed_hosts) {
            Ok(()) => match outbound::build_client(Some(&allowed_hosts)) {
                Ok(client) => {
                    introspection = Some(oauth2::Introspection {
                        endpoint: url,
                        client_id,
                        client_secret,
                        client,
                        cache_seconds,
                        cache: Mutex::new(oauth2::IntrospectionCache::default()),
                    })
                }
                Err(e) => b.error("introspection_endpoint", e, d),
            },
            Err(e) => {
                b.error("introspection_endpoint", e, d);
                return;
            }
        }
    }
    let mut jwt_mode = None;
    if introspection.is_none()
        && let Some(secret) = jwt_secret
    {
        let is_pem = secret.expose().trim_start().starts_with("-----BEGIN");
        // A PEM key is never used as an HMAC secret and vice versa.
        let usable: Vec<_> = algorithms
            .iter()
            .copied()
            .filter(|a| a.is_hmac() != is_pem)
            .collect();
        if usable.is_empty() {
            b.error(
                "jwt_algorithms",
                "no algorithm matches the kind of jwt_secret (HMAC secret or PEM public key)",
                d,
            );
            return;
        }
        match jwt::JwtKeys::new(secret.expose(), &usable) {
            Ok(keys) => {
                jwt_mode = Some(oauth2::JwtMode {
                    algorithms: usable,
                    keys,
                })
            }
            Err(e) => {
                b.error("jwt_secret", e, d);
                return;
            }
        }
    }
    auth.methods
        .push(Method::OAuth2(Box::new(oauth2::OAuth2Method {
            token_type,
            required_scope,
            introspection,
            jwt: jwt_mode,
            audience,
            issuer,
            verify_exp,
        })));
}

/// The introspection endpoint policy: `https://`, or `http://` only for allowed hosts;
/// literal restricted addresses only for allowed hosts (names are checked when resolved).
fn check_endpoint_url(url: &str, allowed_hosts: &[String]) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "must be a valid URL".to_string())?;
    let host = parsed
        .host_str()
        .ok_or_else(|| "must have a host".to_string())?
        .to_ascii_lowercase();
    let allowed = allowed_hosts.contains(&host);
    match parsed.scheme() {
        "https" => {}
        "http" if allowed => {}
        _ => return Err("must be an https:// URL (http:// only for allowed_hosts)".into()),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not contain credentials; use client_id and client_secret".into());
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>()
        && outbound::is_restricted_ip(ip)
        && !allowed
    {
        return Err("refers to a private, loopback or metadata address; list it in allowed_hosts to allow it".into());
    }
    Ok(())
}

fn build_recaptcha(b: &Block<'_>, json_data: bool, d: &mut Diagnostics, auth: &mut WebhookAuth) {
    b.warn_unknown(
        &[
            "secret_key",
            "version",
            "token_source",
            "token_field",
            "min_score",
            "verify_url",
        ],
        d,
    );
    let secret_key = b.req_secret("secret_key", d);
    let v3 = match b.opt_str("version", d).as_deref() {
        None | Some("v3") => true,
        Some("v2") => false,
        Some(_) => {
            b.error("version", "must be \"v2\" or \"v3\"", d);
            true
        }
    };
    let field = b.opt_str("token_field", d).filter(|f| !f.is_empty());
    let source = match b.opt_str("token_source", d).as_deref() {
        None | Some("header") => {
            let display = field.unwrap_or_else(|| "X-Recaptcha-Token".into());
            match HeaderName::from_bytes(display.as_bytes()) {
                Ok(h) => Some(recaptcha::TokenSource::Header(h, display)),
                Err(_) => {
                    b.error("token_field", "must be a valid HTTP header name", d);
                    None
                }
            }
        }
        Some("body") => {
            if !json_data {
                b.error("token_source", "\"body\" requires data_type \"json\"", d);
            }
            Some(recaptcha::TokenSource::Body(field))
        }
        Some(_) => {
            b.error("token_source", "must be \"header\" or \"body\"", d);
            None
        }
    };
    let min_score = b.f64_in("min_score", 0.5, 0.0, 1.0, d);
    let verify_url = b
        .opt_str("verify_url", d)
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| recaptcha::DEFAULT_VERIFY_URL.into());
    match reqwest::Url::parse(&verify_url) {
        Ok(u) if u.scheme() == "https" => {}
        // Plain http only to loopback, for a local stand-in of the verify endpoint in tests.
        Ok(u)
            if u.scheme() == "http"
                && matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")) => {}
        _ => {
            b.error("verify_url", "must be an https:// URL", d);
            return;
        }
    }
    // A loopback stand-in is reached directly, never through a configured proxy.
    let loopback: Option<Vec<String>> = reqwest::Url::parse(&verify_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .filter(|h| matches!(h.as_str(), "127.0.0.1" | "localhost" | "[::1]"))
        .map(|h| vec![h]);
    let client = match outbound::build_client(loopback.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            b.error("verify_url", e, d);
            return;
        }
    };
    if let (Some(secret_key), Some(source)) = (secret_key, source) {
        auth.methods
            .push(Method::Recaptcha(Box::new(recaptcha::RecaptchaMethod {
                secret_key,
                v3,
                source,
                min_score,
                verify_url,
                client,
            })));
    }
}

fn build_cleanup(path: &str, v: &Value, d: &mut Diagnostics) -> Option<CredentialCleanup> {
    let b = Block::object(path, "credential_cleanup", v, d)?;
    b.warn_unknown(&["enabled", "mode", "fields"], d);
    let enabled = b.bool("enabled", false, d);
    let mode = match b.opt_str("mode", d).as_deref() {
        None | Some("mask") => Some(CleanupMode::Mask),
        Some("remove") => Some(CleanupMode::Remove),
        Some(_) => {
            b.error("mode", "must be \"mask\" or \"remove\"", d);
            None
        }
    };
    let fields = match b.map.get("fields") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(_) => {
            b.error("fields", "expected a list of strings", d);
            Vec::new()
        }
    };
    match mode {
        Some(mode) if enabled => Some(CredentialCleanup::new(mode, &fields)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
