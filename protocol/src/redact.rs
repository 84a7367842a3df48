//! Masking secrets for display, shared by the relay's and the connector's `print-config`: the
//! mask text, passwords inside URLs, and every leaf of a value.

use serde_json::Value;

/// What a masked value shows.
pub const MASK: &str = "***";

/// `scheme://user:password@host/…` with the password replaced by [`MASK`]; other text
/// unchanged. A lone userinfo (`redis://secret@host`) may be a password-only credential and is
/// masked too.
pub fn mask_url(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return text.to_owned();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split_once(':').map(|(u, _)| u).unwrap_or("");
    format!("{}://{user}:{MASK}{}", &text[..scheme_end], &rest[at..])
}

/// Every leaf of `value` masked; booleans and nulls are kept, as they hold no secret.
pub fn mask_all(value: &Value) -> Value {
    match value {
        Value::Null | Value::Bool(_) => value.clone(),
        Value::Array(items) => Value::Array(items.iter().map(mask_all).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), mask_all(v))).collect())
        }
        Value::Number(_) | Value::String(_) => Value::String(MASK.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_and_the_rest_kept() {
        assert_eq!(
            mask_url("redis://user:pw@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(mask_url("redis://:pw@host"), "redis://:***@host");
        assert_eq!(mask_url("redis://pw@host"), "redis://:***@host");
        assert_eq!(mask_url("amqp://u:p%40ss@h/%2f"), "amqp://u:***@h/%2f");
        assert_eq!(mask_url("redis://host:6379/0"), "redis://host:6379/0");
        assert_eq!(mask_url("https://h/p?x=a@b"), "https://h/p?x=a@b");
        assert_eq!(mask_url("not a url"), "not a url");
    }

    #[test]
    fn every_leaf_but_booleans_and_nulls_is_masked() {
        let v = serde_json::json!({"a": "s", "b": [1, true, null], "c": {"d": 2.5}});
        assert_eq!(
            mask_all(&v),
            serde_json::json!({"a": "***", "b": ["***", true, null], "c": {"d": "***"}})
        );
    }
}
