//! The `headers` object of a webhook message: lower-case names, string values, in received
//! order (`docs/reference/wire-protocol.md` A.5).

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Hop-by-hop headers, never relayed.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// True for a hop-by-hop header name (any letter case).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// True for a header never forwarded to a local target under its own name (`docs/reference/module-contract.md` §7.1):
/// hop-by-hop, `host` and `content-length` (any letter case).
pub fn never_forwarded(name: &str) -> bool {
    is_hop_by_hop(name)
        || name.eq_ignore_ascii_case("host")
        || name.eq_ignore_ascii_case("content-length")
}

/// Ordered header list, serialised as a JSON object.
///
/// Names are unique: [`Headers::append`] joins a repeated header's values with `", "` as the spec
/// requires. Reading a JSON object with a repeated key keeps the last value.
///
/// ```
/// use webhook_connect_protocol::Headers;
/// let mut h = Headers::default();
/// h.append("Accept", "a");
/// h.append("accept", "b");
/// assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"accept":"a, b"}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Adds a header received on ingest: the name is lower-cased; a repeated name has its value
    /// joined to the earlier one with `", "`.
    pub fn append(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        if let Some((_, existing)) = self.0.iter_mut().find(|(n, _)| *n == name) {
            existing.push_str(", ");
            existing.push_str(value);
        } else {
            self.0.push((name, value.to_owned()));
        }
    }

    /// Sets `name` (lower-cased) to `value`, replacing any earlier value.
    pub fn insert(&mut self, name: &str, value: impl Into<String>) {
        let name = name.to_ascii_lowercase();
        let value = value.into();
        if let Some((_, existing)) = self.0.iter_mut().find(|(n, _)| *n == name) {
            *existing = value;
        } else {
            self.0.push((name, value));
        }
    }

    /// The value of `name`, compared ignoring case.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Removes `name` (any case); returns whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.0.len() != before
    }

    /// The headers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, String)> for Headers {
    fn from_iter<T: IntoIterator<Item = (String, String)>>(iter: T) -> Self {
        let mut headers = Headers::new();
        for (name, value) in iter {
            headers.append(&name, &value);
        }
        headers
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;

        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = Headers;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of string header values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Headers, A::Error> {
                let mut headers = Headers::new();
                while let Some((name, value)) = access.next_entry::<String, String>()? {
                    // Peers send unique names; a repeated JSON key keeps the last value.
                    headers.insert(&name, value);
                }
                Ok(headers)
            }
        }

        deserializer.deserialize_map(HeadersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_received_order_and_joins_repeats() {
        let mut h = Headers::new();
        h.append("X-B", "1");
        h.append("X-A", "2");
        h.append("x-b", "3");
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"x-b":"1, 3","x-a":"2"}"#
        );
        assert_eq!(h.get("X-A"), Some("2"));
        assert!(h.remove("X-B"));
        assert!(!h.remove("X-B"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn reads_objects_and_rejects_non_string_values() {
        let h: Headers = serde_json::from_str(r#"{"a":"1","b":"2","a":"3"}"#).unwrap();
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("a", "3"), ("b", "2")]);
        assert!(serde_json::from_str::<Headers>(r#"{"a":1}"#).is_err());
        assert!(serde_json::from_str::<Headers>(r#"["a"]"#).is_err());
    }

    #[test]
    fn hop_by_hop_names_are_recognised() {
        assert!(is_hop_by_hop("Transfer-Encoding"));
        assert!(!is_hop_by_hop("content-type"));
    }
}
