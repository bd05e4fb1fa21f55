//! The secret scanner behind every test that runs a provider.
//!
//! [`scan`] reports which *classes* of secret a text contains, never the
//! secrets themselves, so a failing assertion can be printed safely. It looks
//! for what it recognises on its own (the plaintext marker every test seed
//! carries, anything shaped like an OpenBao token, Transit ciphertext) and for
//! the values a test knows ([`Known`]): the JWTs the lab minted, every
//! token its audit log shows ([`audited`]), PKCS#11 PINs and private keys.

use std::fs;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde_json::Value;

use super::PLAINTEXT_MARKER;

/// Secrets to look for besides the shapes [`scan`] recognises by itself.
#[derive(Debug, Default, Clone)]
pub struct Known {
    /// JWTs, each also looked for segment by segment.
    pub jwts: Vec<String>,
    /// OpenBao tokens, e.g. every client token in a lab's audit log.
    pub tokens: Vec<String>,
    /// PKCS#11 user PINs.
    pub pins: Vec<String>,
    /// Private keys (PKCS#8 DER), looked for as PEM lines, base64 at any
    /// alignment, hex and a byte list.
    pub private_keys: Vec<Vec<u8>>,
    /// Anything else the output must not contain (key names, private paths).
    pub extra: Vec<String>,
}

impl Known {
    pub fn merge(mut self, other: Known) -> Known {
        self.jwts.extend(other.jwts);
        self.tokens.extend(other.tokens);
        self.pins.extend(other.pins);
        self.private_keys.extend(other.private_keys);
        self.extra.extend(other.extra);
        self
    }
}

/// Shorter JWT segments or token bodies would match ordinary text.
const MIN_FRAGMENT: usize = 16;

/// The classes of secret in `text`, in a fixed order; empty when clean.
pub fn scan(text: &str, known: &Known) -> Vec<&'static str> {
    let has = |needle: &str| !needle.is_empty() && text.contains(needle);
    let marker = PLAINTEXT_MARKER.as_bytes();
    let checks = [
        ("plaintext marker", has(PLAINTEXT_MARKER)),
        (
            "plaintext marker in base64",
            base64_fragments(marker).iter().any(|f| has(f)),
        ),
        ("plaintext marker in hex", has(&hex(marker))),
        // `{:?}` of a byte slice, the easiest way to log a plaintext by mistake.
        ("plaintext marker as a byte list", has(&byte_list(marker))),
        ("JWT", known.jwts.iter().any(|j| has(j.trim()))),
        (
            "JWT segment",
            known
                .jwts
                .iter()
                .flat_map(|j| j.trim().split('.'))
                .any(|s| s.len() >= MIN_FRAGMENT && has(s)),
        ),
        (
            "OpenBao token from the audit log",
            known.tokens.iter().any(|t| {
                // Also without its `s.`/`b.` prefix.
                let body = t.split_once('.').map_or(t.as_str(), |(_, b)| b);
                has(t) || (body.len() >= MIN_FRAGMENT && has(body))
            }),
        ),
        ("OpenBao-token-shaped string", has_token_shape(text)),
        ("Transit ciphertext", has_transit_ciphertext(text)),
        (
            "Transit ciphertext in base64",
            base64_fragments(b"vault:v").iter().any(|f| has(f)),
        ),
        ("PKCS#11 PIN", known.pins.iter().any(|p| has(p))),
        (
            "private key PEM line",
            known
                .private_keys
                .iter()
                .flat_map(|k| pem_lines(k))
                .any(|l| has(&l)),
        ),
        (
            "private key in base64",
            known
                .private_keys
                .iter()
                .flat_map(|k| base64_fragments(k))
                .any(|f| has(&f)),
        ),
        (
            "private key in hex",
            known.private_keys.iter().any(|k| has(&hex(k))),
        ),
        (
            "private key as a byte list",
            known.private_keys.iter().any(|k| has(&byte_list(k))),
        ),
        ("test-specific secret", known.extra.iter().any(|e| has(e))),
    ];
    checks
        .into_iter()
        .filter_map(|(class, found)| found.then_some(class))
        .collect()
}

/// Every client token and login JWT in an OpenBao audit log.
///
/// The lab's audit device logs raw values (`log_raw`); a hashed log would
/// make the scan pointless, so it is a hard failure, as is a missing log.
pub fn audited(audit_log: &Path) -> Known {
    let text = fs::read_to_string(audit_log).unwrap_or_else(|e| {
        panic!(
            "read the audit log {} for the leak scan ({e}); drop a Provider before its Lab",
            audit_log.display()
        )
    });
    let mut known = Known::default();
    for line in text.lines() {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("audit log line is not JSON ({e})"));
        collect(&entry, &mut known);
    }
    known.tokens.sort();
    known.tokens.dedup();
    known.jwts.sort();
    known.jwts.dedup();
    known
}

fn collect(value: &Value, known: &mut Known) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if let (Some(list), Some(s)) = (secret_list(key, known), value.as_str()) {
                    assert!(
                        !s.starts_with("hmac-sha256:"),
                        "the audit log hashes `{key}`: the lab must set log_raw"
                    );
                    if !s.is_empty() {
                        list.push(s.to_owned());
                    }
                }
                collect(value, known);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, known)),
        _ => {}
    }
}

fn secret_list<'a>(key: &str, known: &'a mut Known) -> Option<&'a mut Vec<String>> {
    match key {
        "client_token" => Some(&mut known.tokens),
        "jwt" => Some(&mut known.jwts),
        _ => None,
    }
}

/// The base64 forms `secret` takes inside any base64 text, whatever its
/// alignment: a full-block fragment for each of the three offsets, in the
/// standard and the URL-safe alphabet.
fn base64_fragments(secret: &[u8]) -> Vec<String> {
    let mut fragments = Vec::new();
    for offset in 0..3 {
        let mut bytes = vec![0u8; offset];
        bytes.extend_from_slice(secret);
        // Drop the characters that mix in the padding bytes or the tail.
        let skip = (offset * 4).div_ceil(3);
        let keep = (bytes.len() / 3) * 4;
        for encoded in [STANDARD.encode(&bytes), URL_SAFE.encode(&bytes)] {
            fragments.push(encoded[skip..keep].to_owned());
        }
    }
    fragments
}

/// The body lines of `der` as a PEM file wraps them (64 characters), the
/// last one only when long enough not to match ordinary text.
fn pem_lines(der: &[u8]) -> Vec<String> {
    let encoded = STANDARD.encode(der);
    encoded
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .filter(|l| l.len() >= MIN_FRAGMENT)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn byte_list(bytes: &[u8]) -> String {
    let list = format!("{bytes:?}");
    list.trim_matches(['[', ']']).to_owned()
}

/// Token prefixes OpenBao 2.7.2 issues (`s.` service, `b.` batch, `r.`
/// recovery) and Vault's (`hvs.`, `hvb.`, `hvr.`), which OpenBao accepts.
const TOKEN_PREFIXES: [&str; 6] = ["s.", "b.", "r.", "hvs.", "hvb.", "hvr."];
/// OpenBao service tokens carry 24 characters after `s.`; batch tokens more.
const TOKEN_BODY: usize = 24;

fn has_token_shape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let token_char = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-';
    TOKEN_PREFIXES.iter().any(|prefix| {
        text.match_indices(prefix).any(|(i, _)| {
            let starts_word = i == 0 || !token_char(&bytes[i - 1]);
            let body = bytes[i + prefix.len()..]
                .iter()
                .take_while(|b| token_char(b))
                .count();
            starts_word && body >= TOKEN_BODY
        })
    })
}

fn has_transit_ciphertext(text: &str) -> bool {
    text.match_indices("vault:v").any(|(i, _)| {
        let rest = &text[i + "vault:v".len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0
            && rest[digits..].starts_with(':')
            && rest[digits + 1..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
                .count()
                >= 8
    })
}
