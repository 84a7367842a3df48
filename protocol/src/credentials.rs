//! Names that mark credentials, shared by the relay and the connector so the lists are written
//! once: the authentication keys of a `webhooks.json` entry, the field and header names that
//! `credential_cleanup` treats as credentials, and the key fragments the connector's `log`
//! module redacts.

/// Keys of a webhook entry that configure sender authentication (`docs/reference/auth-methods.md`): the relay
/// reads them, the connector ignores them without a warning.
pub const AUTH_KEYS: [&str; 14] = [
    "authorization",
    "basic_auth",
    "digest_auth",
    "jwt",
    "header_auth",
    "query_auth",
    "hmac",
    "ip_whitelist",
    "rate_limit",
    "json_schema",
    "oauth2",
    "oauth1",
    "recaptcha",
    "trusted_proxies",
];

/// Header and payload field names that `credential_cleanup` masks or removes by default
/// (`docs/reference/auth-methods.md` §10.2), lower case, compared exactly after lower-casing.
pub const CREDENTIAL_NAMES: [&str; 30] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_token",
    "refresh_token",
    "authorization",
    "auth",
    "credential",
    "credentials",
    "private_key",
    "privatekey",
    "api_secret",
    "client_secret",
    "bearer",
    "x-api-key",
    "x-auth-token",
    "x-access-token",
    "session_id",
    "sessionid",
    "session_token",
    "csrf_token",
    "csrf",
    "oauth_token",
    "oauth_secret",
    "consumer_secret",
    "token_secret",
];

/// Key fragments whose values the connector's `log` module prints as `[REDACTED]`
/// (`docs/reference/module-contract.md` §3.1): a lower-cased key that contains one is sensitive (headers also with `-`
/// for `_`).
pub const SENSITIVE_KEY_FRAGMENTS: [&str; 23] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_token",
    "refresh_token",
    "authorization",
    "auth",
    "credential",
    "private_key",
    "privatekey",
    "session",
    "cookie",
    "ssn",
    "credit_card",
    "creditcard",
    "database_url",
    "db_url",
    "connection_string",
    "conn_string",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_lower_case_and_without_repeats() {
        for list in [
            &AUTH_KEYS[..],
            &CREDENTIAL_NAMES[..],
            &SENSITIVE_KEY_FRAGMENTS[..],
        ] {
            for (i, name) in list.iter().enumerate() {
                assert_eq!(*name, name.to_lowercase());
                assert!(!list[..i].contains(name), "{name} twice");
            }
        }
    }
}
