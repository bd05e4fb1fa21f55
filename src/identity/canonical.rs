//! Go-compatible JSON string encoding.
//!
//! The canonical AAD and the config fingerprint are hashed or sent as bytes, so
//! they must match what the Go reference's `encoding/json` emits byte for byte,
//! including its HTML-safe escaping of `<`, `>`, `&` and of U+2028/U+2029.

use std::fmt::Write as _;

/// Encodes `s` as a JSON string literal (with quotes) exactly like Go's encoder.
pub fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
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
    fn escapes_like_go() {
        assert_eq!(go_json_string("plain"), "\"plain\"");
        assert_eq!(go_json_string("a<b>&c"), "\"a\\u003cb\\u003e\\u0026c\"");
        assert_eq!(go_json_string("q\"\\"), "\"q\\\"\\\\\"");
        assert_eq!(go_json_string("\u{1}\n"), "\"\\u0001\\n\"");
        assert_eq!(go_json_string("\u{2028}é"), "\"\\u2028é\"");
    }
}
