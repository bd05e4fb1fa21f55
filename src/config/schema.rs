//! The JSON Schema (draft 2020-12) of the config file, printed by
//! `config schema` (spec config §1.9).
//!
//! It is kept as a JSON document beside the loader so editors and CI can use
//! it directly. The loader stays the authority: the schema describes the same
//! keys, types, enums, required fields and per-field value shapes, and an
//! integration test checks both agree on every sample and on a set of broken
//! configs. Rules that span fields or need the host are loader-only (the
//! schema's `description` lists them).

/// The schema text, exactly as printed.
pub const CONFIG_SCHEMA: &str = include_str!("schema.json");

#[cfg(test)]
mod tests {
    use super::CONFIG_SCHEMA;

    #[test]
    fn schema_is_json_with_the_reference_identity() {
        let schema: serde_json::Value = serde_json::from_str(CONFIG_SCHEMA).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(
            schema["$id"],
            "https://github.com/dc-tec/openbao-kubernetes-kms/config.schema.json"
        );
        assert_eq!(schema["title"], "bao-kms-provider configuration");
        assert_eq!(schema["properties"]["configVersion"]["const"], "v1alpha1");
        assert_eq!(schema["additionalProperties"], false);
    }
}
