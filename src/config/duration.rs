//! Go `time.ParseDuration`-compatible duration parsing.
//!
//! Config files written for the Go reference must keep meaning the same thing, so
//! this follows Go's grammar exactly (`[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, a lone
//! `0`, the `ns us µs μs ms s m h` units, and its overflow rules) instead of a
//! general-purpose crate that accepts other spellings.

/// Nanoseconds per unit, in the order Go's `unitMap` lists them. Both micro
/// signs (U+00B5 and U+03BC) are accepted, as in Go.
const UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// The magnitude limit Go works with: `1 << 63`, reachable only by negative values.
const LIMIT: u64 = 1 << 63;

/// Parses a Go duration string into signed nanoseconds.
///
/// Returns `None` for anything Go rejects, including overflow. Signed output
/// lets validation report negative values instead of losing them.
pub fn parse_go_duration(input: &str) -> Option<i64> {
    let mut s = input.as_bytes();
    let mut negative = false;
    if let Some((&sign @ (b'-' | b'+'), rest)) = s.split_first() {
        negative = sign == b'-';
        s = rest;
    }
    // Go special-cases a bare zero; "00" or "0.0" still need a unit.
    if s == b"0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let (value, rest) = parse_component(s)?;
        s = rest;
        total = total.checked_add(value)?;
        if total > LIMIT {
            return None;
        }
    }
    if negative {
        // -(1 << 63) is exactly i64::MIN; every smaller magnitude fits after negation.
        if total == LIMIT {
            Some(i64::MIN)
        } else {
            i64::try_from(total).ok().map(|v| -v)
        }
    } else {
        i64::try_from(total).ok()
    }
}

/// Parses one `<int>[.<frac>]<unit>` group, returning its nanoseconds and the rest.
fn parse_component(s: &[u8]) -> Option<(u64, &[u8])> {
    // The next character must be a digit or a dot.
    if !matches!(s.first(), Some(b'0'..=b'9' | b'.')) {
        return None;
    }
    let before = s.len();
    let (whole, mut s) = leading_int(s)?;
    let has_whole = s.len() != before;

    let mut fraction: u64 = 0;
    let mut scale: f64 = 1.0;
    let mut has_fraction = false;
    if let Some((b'.', rest)) = s.split_first() {
        let before = rest.len();
        let (f, sc, rest) = leading_fraction(rest);
        fraction = f;
        scale = sc;
        has_fraction = rest.len() != before;
        s = rest;
    }
    // "." alone or ".s" carries no digits at all.
    if !has_whole && !has_fraction {
        return None;
    }

    let unit_len = s
        .iter()
        .position(|&c| c == b'.' || c.is_ascii_digit())
        .unwrap_or(s.len());
    if unit_len == 0 {
        return None;
    }
    let (unit, rest) = s.split_at(unit_len);
    let nanos_per_unit = UNITS
        .iter()
        .find(|(name, _)| name.as_bytes() == unit)
        .map(|&(_, n)| n)?;

    if whole > LIMIT / nanos_per_unit {
        return None;
    }
    let mut value = whole * nanos_per_unit;
    if fraction > 0 {
        // Go uses float64 here too: it is nanosecond-accurate for fractions of an
        // hour, and matching Go's rounding keeps parsed values identical.
        let extra = (fraction as f64 * (nanos_per_unit as f64 / scale)) as u64;
        value = value.checked_add(extra)?;
        if value > LIMIT {
            return None;
        }
    }
    Some((value, rest))
}

/// Consumes leading decimal digits; `None` on overflow past `1 << 63`, as in Go.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut x: u64 = 0;
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > LIMIT {
            return None;
        }
        i += 1;
    }
    Some((x, s.get(i..).unwrap_or_default()))
}

/// Consumes fraction digits; digits past the representable precision are
/// skipped rather than rejected, matching Go.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let mut x: u64 = 0;
    let mut scale = 1.0;
    let mut overflow = false;
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        i += 1;
        if overflow {
            continue;
        }
        if x > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, s.get(i..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration;

    const S: i64 = 1_000_000_000;

    #[test]
    fn accepts_go_spellings() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("-0", 0),
            ("+0", 0),
            ("0s", 0),
            ("30s", 30 * S),
            ("1h30m", 5400 * S),
            ("500ms", S / 2),
            ("-1s", -S),
            ("+5s", 5 * S),
            ("1.5h", 5400 * S),
            ("1.s", S),
            (".5s", S / 2),
            ("2m3.5s", 123 * S + S / 2),
            ("1ns", 1),
            ("1us", 1_000),
            ("1\u{b5}s", 1_000),
            ("1\u{3bc}s", 1_000),
            ("3h2m1s", 3 * 3600 * S + 121 * S),
            ("0.000000001s", 1),
            ("9223372036854775807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("2562047h47m16.854775807s", i64::MAX),
            // Excess fraction digits are dropped, not rejected (Go behaviour).
            ("1.0000000000000000000000001s", S),
        ];
        for &(text, want) in cases {
            assert_eq!(parse_go_duration(text), Some(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for text in [
            "",
            "1",
            "1x",
            "h",
            "-",
            "+",
            ".",
            ".s",
            "s1",
            "00",
            "1.5",
            "1 s",
            " 1s",
            "1s ",
            "1S",
            "1sec",
            "1d",
            "--1s",
            "1e3s",
            "9223372036854775808ns",
            "2562048h",
            "9223372036854775807ns1ns",
            "99999999999999999999s",
        ] {
            assert_eq!(parse_go_duration(text), None, "{text:?}");
        }
    }
}
