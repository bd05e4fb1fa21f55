//! Go-compatible JSON string encoding.
//!
//! The canonical AAD and the config fingerprint are hashed or sent as bytes, so
//! they must match what the Go reference's `encoding/json` emits byte for byte,
//! including its HTML-safe escaping of `<`, `>`, `&` and of U+2028/U+2029.

/// Encodes `s` as a JSON string literal exactly as Go's `encoding/json` does by
/// default: `\"` `\\` `\b` `\f` `\n` `\r` `\t` short escapes, other C0 controls
/// as `\u00xx` (lowercase hex), and HTML-safe escaping of `<` `>` `&` plus the
/// JavaScript line terminators U+2028 and U+2029. Everything else, DEL and
/// non-ASCII included, is copied verbatim.
pub fn go_json_string(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if c < ' ' || c == '<' || c == '>' || c == '&' => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::go_json_string;

    #[test]
    fn go_escaping() {
        assert_eq!(go_json_string("a<b>&c"), r#""a\u003cb\u003e\u0026c""#);
        assert_eq!(go_json_string("\u{2028}\u{2029}"), r#""\u2028\u2029""#);
        assert_eq!(
            go_json_string("q\"s\\\n\r\t\u{8}\u{c}"),
            r#""q\"s\\\n\r\t\b\f""#
        );
        assert_eq!(go_json_string("\u{0}\u{1f}"), r#""\u0000\u001f""#);
        assert_eq!(go_json_string("\u{7f}é/"), "\"\u{7f}é/\"");
    }

    #[test]
    fn go_escaping_agrees_with_serde_json_where_go_does_not_differ() {
        for s in ["plain", "with space", "üñí", "quote\"back\\slash", "a/b"] {
            assert_eq!(go_json_string(s), serde_json::to_string(s).unwrap());
        }
    }
}
