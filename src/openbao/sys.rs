//! `sys/capabilities-self`: what the current token may do on given paths.
//! Used by `doctor` (and later `verify-key`) to prove the policy is
//! least-privilege; the provider itself never calls it.

use super::error::{ErrorClass, OpenBaoError, Operation};
use super::http::{Call, HttpClient};
use crate::secret::SecretString;
use http::Method;
use std::collections::BTreeMap;
use std::time::Duration;

const CAPABILITIES_LIMIT: usize = 256 * 1024;

/// Path → capability strings, as OpenBao reports them.
pub type Capabilities = BTreeMap<String, Vec<String>>;

/// `POST /v1/sys/capabilities-self` with `{"paths": [...]}`. A path missing
/// from the answer maps to an empty list (the caller treats it as incomplete).
pub async fn capabilities_self(
    http: &HttpClient,
    token: &SecretString,
    paths: &[String],
    timeout: Duration,
) -> Result<Capabilities, OpenBaoError> {
    let op = Operation::CapabilitiesSelf;
    let body = serde_json::to_vec(&serde_json::json!({ "paths": paths }))
        .map_err(|_| OpenBaoError::new(op, ErrorClass::InvalidRequest))?;
    let answer = http
        .send(
            Call {
                op,
                method: Method::POST,
                path: "sys/capabilities-self",
                token: Some(token),
                body: Some(body),
                limit: CAPABILITIES_LIMIT,
            },
            timeout,
        )
        .await?;
    parse(&answer.body, paths).ok_or_else(|| OpenBaoError::new(op, ErrorClass::InvalidResponse))
}

/// Reads `data.<path>` (falling back to the top level, where OpenBao also
/// mirrors the answer) for each requested path.
fn parse(body: &[u8], paths: &[String]) -> Option<Capabilities> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let data = value
        .get("data")
        .filter(|d| d.is_object())
        .unwrap_or(&value);
    let mut out = Capabilities::new();
    for path in paths {
        let caps = match data.get(path) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|c| c.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()?,
            Some(_) => return None,
        };
        out.insert(path.clone(), caps);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn reads_each_requested_path() {
        let body = br#"{"request_id":"x","data":{"a/b":["read"],"c":["deny"],"capabilities":["read"]},"a/b":["read"]}"#;
        let paths = vec!["a/b".to_owned(), "c".to_owned(), "missing".to_owned()];
        let caps = parse(body, &paths).unwrap();
        assert_eq!(caps["a/b"], ["read"]);
        assert_eq!(caps["c"], ["deny"]);
        assert!(caps["missing"].is_empty());
        assert!(parse(br#"{"data":{"a/b":"read"}}"#, &paths).is_none());
        assert!(parse(b"not json", &paths).is_none());
    }
}
