//! Validation of channel names, webhook ids and namespaces, and sanitising of connector labels
//! (`docs/reference/wire-protocol.md` §0.3–0.4, `docs/reference/auth-methods.md` §8.2–8.3).
//!
//! The error messages are the original's, because clients and operators know them.

use std::fmt;

/// Longest channel name.
pub const MAX_CHANNEL_NAME_LEN: usize = 128;
/// Longest webhook id, in characters.
pub const MAX_WEBHOOK_ID_LEN: usize = 64;
/// Longest namespace.
pub const MAX_NAMESPACE_LEN: usize = 64;
/// Longest stored `X-Connector-ID` label.
pub const MAX_CONNECTOR_ID_LEN: usize = 128;

/// Webhook ids that can never be used, compared ignoring case.
pub const RESERVED_WEBHOOK_IDS: &[&str] = &[
    "stats", "health", "healthz", "readyz", "metrics", "docs", "redoc", "api", "admin", "connect",
    "root", "system", "internal", "dlq",
];
const RESERVED_PREFIXES: &[&str] = &["internal_", "system_", "admin_"];
const RESERVED_SUFFIXES: &[&str] = &["_internal", "_system", "_admin"];

/// Why a channel name is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    /// Empty name.
    #[error("Channel name must not be empty")]
    Empty,
    /// Longer than [`MAX_CHANNEL_NAME_LEN`].
    #[error("Channel name too long: {0} characters (max: 128)")]
    TooLong(usize),
    /// Not of the form `^[A-Za-z0-9][A-Za-z0-9._-]*$`, or holds `..`.
    #[error(
        "Invalid channel name format. Must start with alphanumeric and contain only alphanumeric, dot, underscore, and hyphen characters, without '..'"
    )]
    Format,
}

/// Checks a channel name: `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$` and no `..`.
///
/// ```
/// use webhook_connect_protocol::names::validate_channel_name;
/// assert!(validate_channel_name("orders.eu-1").is_ok());
/// assert!(validate_channel_name("../x").is_err());
/// ```
pub fn validate_channel_name(name: &str) -> Result<(), ChannelNameError> {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return Err(ChannelNameError::Empty);
    };
    if name.chars().count() > MAX_CHANNEL_NAME_LEN {
        return Err(ChannelNameError::TooLong(name.chars().count()));
    }
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if !first.is_ascii_alphanumeric() || !bytes.iter().all(allowed) || name.contains("..") {
        return Err(ChannelNameError::Format);
    }
    Ok(())
}

/// Why a webhook id is not valid; `Display` is the original's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookIdError {
    /// Rule 1.
    #[error("Webhook ID must be a non-empty string")]
    Empty,
    /// Rule 2.
    #[error("Webhook ID too long: {0} characters (max: 64)")]
    TooLong(usize),
    /// Rule 3.
    #[error(
        "Invalid webhook ID format. Must start with alphanumeric and contain only alphanumeric, underscore, and hyphen characters"
    )]
    Format,
    /// Rule 4.
    #[error("Webhook ID '{0}' is reserved and cannot be used")]
    Reserved(String),
    /// Rule 5.
    #[error("Webhook ID cannot start with reserved prefix '{0}'")]
    ReservedPrefix(&'static str),
    /// Rule 6.
    #[error("Webhook ID cannot end with reserved suffix '{0}'")]
    ReservedSuffix(&'static str),
    /// Rule 7.
    #[error("Webhook ID cannot contain consecutive underscores or hyphens")]
    Consecutive,
}

/// Checks a webhook id with the rules of `docs/reference/auth-methods.md` §8.2, in their order.
///
/// ```
/// use webhook_connect_protocol::names::{validate_webhook_id, WebhookIdError};
/// assert!(validate_webhook_id("stripe-live").is_ok());
/// assert_eq!(validate_webhook_id("Admin"), Err(WebhookIdError::Reserved("Admin".into())));
/// ```
pub fn validate_webhook_id(id: &str) -> Result<(), WebhookIdError> {
    if id.is_empty() {
        return Err(WebhookIdError::Empty);
    }
    let chars = id.chars().count();
    if chars > MAX_WEBHOOK_ID_LEN {
        return Err(WebhookIdError::TooLong(chars));
    }
    let bytes = id.as_bytes();
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-');
    if !bytes[0].is_ascii_alphanumeric() || !bytes.iter().all(allowed) {
        return Err(WebhookIdError::Format);
    }
    let lower = id.to_ascii_lowercase();
    if RESERVED_WEBHOOK_IDS.contains(&lower.as_str()) {
        return Err(WebhookIdError::Reserved(id.to_owned()));
    }
    if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| lower.starts_with(*p)) {
        return Err(WebhookIdError::ReservedPrefix(prefix));
    }
    if let Some(suffix) = RESERVED_SUFFIXES.iter().find(|s| lower.ends_with(*s)) {
        return Err(WebhookIdError::ReservedSuffix(suffix));
    }
    if id.contains("--") || id.contains("__") {
        return Err(WebhookIdError::Consecutive);
    }
    Ok(())
}

/// The namespace segment of `POST /webhook/{namespace}/{id}` is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid namespace format")]
pub struct NamespaceError;

/// Checks a namespace: `^[A-Za-z0-9_-]{1,64}$`.
pub fn validate_namespace(namespace: &str) -> Result<(), NamespaceError> {
    let ok = (1..=MAX_NAMESPACE_LEN).contains(&namespace.len())
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok { Ok(()) } else { Err(NamespaceError) }
}

/// The stored form of an `X-Connector-ID` label: every character outside `[A-Za-z0-9._:-]`
/// becomes `_`, cut to 128 characters. Never rejected, never used to build identifiers.
///
/// ```
/// use webhook_connect_protocol::names::sanitize_connector_id;
/// assert_eq!(sanitize_connector_id("office 1/ü"), "office_1__");
/// ```
pub fn sanitize_connector_id(label: &str) -> String {
    label
        .chars()
        .take(MAX_CONNECTOR_ID_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A channel name that passed [`validate_channel_name`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ChannelName(String);

impl ChannelName {
    /// Validates and wraps `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, ChannelNameError> {
        let name = name.into();
        validate_channel_name(&name)?;
        Ok(ChannelName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ChannelName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        ChannelName::new(name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_the_pattern_r133() {
        for good in ["a", "orders", "a.b", "a-b", "A_1", &"x".repeat(128)] {
            assert_eq!(validate_channel_name(good), Ok(()), "{good}");
        }
        assert_eq!(validate_channel_name(""), Err(ChannelNameError::Empty));
        assert_eq!(
            validate_channel_name(&"x".repeat(129)),
            Err(ChannelNameError::TooLong(129))
        );
        for bad in ["a*b", "a:b", "../x", "a b", ".a", "-a", "a..b", "a#", "ä"] {
            assert_eq!(
                validate_channel_name(bad),
                Err(ChannelNameError::Format),
                "{bad}"
            );
        }
    }

    #[test]
    fn webhook_id_rules_apply_in_order_r10() {
        use WebhookIdError::*;
        assert_eq!(validate_webhook_id(""), Err(Empty));
        assert_eq!(validate_webhook_id(&"a".repeat(70)), Err(TooLong(70)));
        assert_eq!(
            WebhookIdError::TooLong(70).to_string(),
            "Webhook ID too long: 70 characters (max: 64)"
        );
        // Too long wins over bad format.
        assert_eq!(validate_webhook_id(&"!".repeat(65)), Err(TooLong(65)));
        for bad in ["_a", "-a", "a.b", "a b", "a/b", "é"] {
            assert_eq!(validate_webhook_id(bad), Err(Format), "{bad}");
        }
        assert_eq!(validate_webhook_id("DLQ"), Err(Reserved("DLQ".into())));
        assert_eq!(
            Reserved("DLQ".into()).to_string(),
            "Webhook ID 'DLQ' is reserved and cannot be used"
        );
        assert_eq!(
            validate_webhook_id("Admin_x"),
            Err(ReservedPrefix("admin_"))
        );
        assert_eq!(
            validate_webhook_id("x_SYSTEM"),
            Err(ReservedSuffix("_system"))
        );
        assert_eq!(validate_webhook_id("a--b"), Err(Consecutive));
        assert_eq!(validate_webhook_id("a__b"), Err(Consecutive));
        assert_eq!(validate_webhook_id("a-_b"), Ok(()));
        assert_eq!(validate_webhook_id(&"a".repeat(64)), Ok(()));
    }

    #[test]
    fn namespaces_are_checked() {
        assert!(validate_namespace("team_a-1").is_ok());
        assert!(validate_namespace("").is_err());
        assert!(validate_namespace(&"n".repeat(65)).is_err());
        assert!(validate_namespace("a.b").is_err());
        assert_eq!(NamespaceError.to_string(), "Invalid namespace format");
    }

    #[test]
    fn connector_ids_are_sanitised_and_cut() {
        assert_eq!(sanitize_connector_id("ok-1.a:b_c"), "ok-1.a:b_c");
        assert_eq!(sanitize_connector_id("<script>"), "_script_");
        assert_eq!(sanitize_connector_id(&"é".repeat(300)).len(), 128);
    }

    #[test]
    fn channel_name_deserialisation_validates() {
        assert!(serde_json::from_str::<ChannelName>("\"a.b\"").is_ok());
        assert!(serde_json::from_str::<ChannelName>("\"a*b\"").is_err());
    }
}
