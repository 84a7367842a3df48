//! `json_schema` (§6, R-08): compiled at load, validated after parsing.

use serde_json::Value;

use super::rejection::Rejection;

/// A compiled schema.
pub(crate) struct CompiledSchema(jsonschema::Validator);

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompiledSchema")
    }
}

impl CompiledSchema {
    /// Compiles a schema; the draft comes from `$schema` (default 2020-12). Remote `$ref`s are
    /// never fetched (this build has no retriever), so a schema needing one is an error.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        if !schema.is_object() && !schema.is_boolean() {
            return Err("expected a JSON Schema object".into());
        }
        jsonschema::validator_for(schema)
            .map(CompiledSchema)
            .map_err(|e| format!("invalid JSON Schema: {e}"))
    }

    pub fn validate(&self, payload: &Value) -> Result<(), Rejection> {
        if self.0.is_valid(payload) {
            Ok(())
        } else {
            Err(Rejection::bad_request("JSON schema validation failed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_failure_answers_400_r08() {
        let s = CompiledSchema::compile(&json!({
            "type": "object", "required": ["id"],
            "properties": {"id": {"type": "string"}, "n": {"maximum": 10}}
        }))
        .expect("compiles");
        assert!(s.validate(&json!({"id": "x", "n": 10})).is_ok());
        let r = s.validate(&json!({"n": 1})).expect_err("invalid");
        assert_eq!(r.status, 400);
        assert_eq!(r.detail, "JSON schema validation failed");
        let big: Value =
            serde_json::from_str(r#"{"id":"x","n":10.000000000000000000001}"#).expect("json");
        assert!(s.validate(&big).is_err());
    }

    #[test]
    fn invalid_or_remote_schema_is_a_load_error() {
        assert!(CompiledSchema::compile(&json!({"type": 12})).is_err());
        assert!(
            CompiledSchema::compile(&json!({"$ref": "https://example.invalid/schema.json"}))
                .is_err()
        );
        assert!(CompiledSchema::compile(&json!("nope")).is_err());
    }
}
