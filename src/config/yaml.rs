//! A strict, typed walker over a parsed YAML tree.
//!
//! Serde derive would coerce, default and echo offending values in its error
//! text; the reference rejects all three. So the decoder asks for each field by
//! name and type, and the walker:
//! - rejects any key nobody asked for (strict decoding at every level),
//! - never converts between types (`1234` is not a string, `"true"` not a bool),
//! - records which keys were written at all, even as `null`, because some rules
//!   depend on presence rather than value (§1.1.2, §1.1.7),
//! - reports problems by field name only.
//!
//! A `null` value reads as "not set" so the built-in default applies, matching
//! how the reference's loader treats an empty YAML value.
//!
//! Scalar typing is the parser's (YAML 1.2 core): `true`/`false` are booleans,
//! `yes` is a string, and unquoted leading-zero digits such as `0660` are
//! strings. Go's yaml.v3 reads the latter as octal integers and so rejects them
//! for string fields; here they keep exactly the text written.

use std::collections::BTreeSet;

use serde_norway::{Mapping, Value};

use super::duration::parse_go_duration;
use super::error::Problem;

/// Message for durations that are not Go duration strings, including bare numbers
/// (the reference refuses to guess whether `120` means seconds or nanoseconds).
pub const DURATION_MESSAGE: &str = "must be a duration string with units, such as 30s or 0s";

/// Collects problems and key presence while a document is walked.
#[derive(Debug, Default)]
pub struct Walk {
    problems: Vec<Problem>,
    present: BTreeSet<String>,
}

impl Walk {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the document wrote this dotted key, with any value including `null`.
    pub fn is_present(&self, field: &str) -> bool {
        self.present.contains(field)
    }

    pub fn problem(&mut self, field: impl Into<String>, message: &str) {
        self.problems.push(Problem::new(field, message));
    }

    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

/// One mapping in the document, addressed by its dotted path.
///
/// Keys read through the accessors become "known"; [`Section::finish`] reports
/// every other key, so the schema is exactly the set of accessor calls.
#[derive(Debug)]
pub struct Section<'a> {
    path: String,
    map: Option<&'a Mapping>,
    known: Vec<&'static str>,
}

impl<'a> Section<'a> {
    /// The document root; `None` (an empty document) reads as an empty
    /// mapping, so the usual "is required" problems explain what is missing.
    pub fn root(map: Option<&'a Mapping>) -> Self {
        Self {
            path: String::new(),
            map,
            known: Vec::new(),
        }
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Marks `key` as known, records its presence and returns its non-null value.
    fn lookup(&mut self, walk: &mut Walk, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        let value = self.map?.get(key)?;
        walk.present.insert(self.field(key));
        match value {
            Value::Null => None,
            other => Some(other),
        }
    }

    /// A YAML string. Numbers, booleans and everything else are type errors.
    pub fn string(&mut self, walk: &mut Walk, key: &'static str) -> Option<String> {
        match self.lookup(walk, key)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                walk.problem(self.field(key), "must be a string");
                None
            }
        }
    }

    /// A Go duration string, as signed nanoseconds.
    pub fn duration(&mut self, walk: &mut Walk, key: &'static str) -> Option<i64> {
        let parsed = match self.lookup(walk, key)? {
            Value::String(s) => parse_go_duration(s),
            _ => None,
        };
        if parsed.is_none() {
            walk.problem(self.field(key), DURATION_MESSAGE);
        }
        parsed
    }

    /// A YAML integer that fits in `i64`. Floats and quoted digits are type errors.
    pub fn int(&mut self, walk: &mut Walk, key: &'static str) -> Option<i64> {
        let message = match self.lookup(walk, key)? {
            Value::Number(n) => match n.as_i64() {
                Some(v) => return Some(v),
                None if n.is_u64() => "is out of range",
                None => "must be an integer",
            },
            _ => "must be an integer",
        };
        walk.problem(self.field(key), message);
        None
    }

    /// A YAML boolean (`true`/`false`); strings such as `"true"` or `yes` are refused.
    pub fn boolean(&mut self, walk: &mut Walk, key: &'static str) -> Option<bool> {
        match self.lookup(walk, key)? {
            Value::Bool(b) => Some(*b),
            _ => {
                walk.problem(self.field(key), "must be a boolean");
                None
            }
        }
    }

    /// A YAML sequence of strings. A single scalar is not promoted to a list.
    pub fn strings(&mut self, walk: &mut Walk, key: &'static str) -> Option<Vec<String>> {
        let items = match self.lookup(walk, key)? {
            Value::Sequence(items) => items,
            _ => {
                walk.problem(self.field(key), "must be a list of strings");
                return None;
            }
        };
        let strings: Option<Vec<String>> = items
            .iter()
            .map(|item| match item {
                Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if strings.is_none() {
            walk.problem(self.field(key), "must be a list of strings");
        }
        strings
    }

    /// A nested mapping. Absent or `null` gives an empty section; any other
    /// type is a problem and is then treated as empty so walking can go on.
    pub fn section(&mut self, walk: &mut Walk, key: &'static str) -> Section<'a> {
        let path = self.field(key);
        let map = match self.lookup(walk, key) {
            Some(Value::Mapping(map)) => Some(map),
            Some(_) => {
                walk.problem(path.clone(), "must be a mapping");
                None
            }
            None => None,
        };
        Section {
            path,
            map,
            known: Vec::new(),
        }
    }

    /// Reports every key of this mapping that no accessor asked for.
    pub fn finish(self, walk: &mut Walk) {
        let Some(map) = self.map else { return };
        for (key, _) in map {
            match key {
                Value::String(name) if self.known.contains(&name.as_str()) => {}
                Value::String(name) if is_printable_key(name) => {
                    walk.problem(self.field(name), "is not a supported setting");
                }
                // A key that does not look like a field name may be pasted
                // content, so it is described rather than quoted.
                _ => {
                    let owner = if self.path.is_empty() {
                        "config".to_owned()
                    } else {
                        self.path.clone()
                    };
                    walk.problem(owner, "contains an unsupported key");
                }
            }
        }
    }
}

/// Whether an unknown key is safe to repeat in a message: short and made of
/// the characters real setting names use.
fn is_printable_key(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::{DURATION_MESSAGE, Section, Walk};
    use crate::config::error::Problem;

    fn parse(text: &str) -> serde_norway::Mapping {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn types_are_not_coerced() {
        let doc = parse(
            "s: 1234\nq: \"1234\"\nd: 120\nb: \"true\"\ni: \"3\"\nf: 1.5\nl: one\nn: 3\nt: true\nok: 5s\n",
        );
        let mut walk = Walk::new();
        let mut root = Section::root(Some(&doc));
        assert_eq!(root.string(&mut walk, "s"), None);
        assert_eq!(root.string(&mut walk, "q").as_deref(), Some("1234"));
        assert_eq!(root.duration(&mut walk, "d"), None);
        assert_eq!(root.boolean(&mut walk, "b"), None);
        assert_eq!(root.int(&mut walk, "i"), None);
        assert_eq!(root.int(&mut walk, "f"), None);
        assert_eq!(root.strings(&mut walk, "l"), None);
        assert_eq!(root.int(&mut walk, "n"), Some(3));
        assert_eq!(root.boolean(&mut walk, "t"), Some(true));
        assert_eq!(root.duration(&mut walk, "ok"), Some(5_000_000_000));
        root.finish(&mut walk);
        assert_eq!(
            walk.into_problems(),
            vec![
                Problem::new("s", "must be a string"),
                Problem::new("d", DURATION_MESSAGE),
                Problem::new("b", "must be a boolean"),
                Problem::new("i", "must be an integer"),
                Problem::new("f", "must be an integer"),
                Problem::new("l", "must be a list of strings"),
            ]
        );
    }

    #[test]
    fn empty_root_is_an_empty_mapping() {
        let mut walk = Walk::new();
        let mut root = Section::root(None);
        assert_eq!(root.string(&mut walk, "a"), None);
        root.section(&mut walk, "b").finish(&mut walk);
        root.finish(&mut walk);
        assert!(walk.into_problems().is_empty());
    }

    #[test]
    fn unknown_keys_are_reported_by_path() {
        let doc = parse("a:\n  b: x\n  extra: 1\n  \"has space\": 2\ntop: 3\n");
        let mut walk = Walk::new();
        let mut root = Section::root(Some(&doc));
        let mut a = root.section(&mut walk, "a");
        assert_eq!(a.string(&mut walk, "b").as_deref(), Some("x"));
        a.finish(&mut walk);
        root.finish(&mut walk);
        assert_eq!(
            walk.into_problems(),
            vec![
                Problem::new("a.extra", "is not a supported setting"),
                Problem::new("a", "contains an unsupported key"),
                Problem::new("top", "is not a supported setting"),
            ]
        );
    }

    #[test]
    fn null_counts_as_present_but_unset() {
        let doc = parse("a:\n  src: null\n  other:\n");
        let mut walk = Walk::new();
        let mut root = Section::root(Some(&doc));
        let mut a = root.section(&mut walk, "a");
        assert_eq!(a.string(&mut walk, "src"), None);
        let nested = a.section(&mut walk, "other");
        nested.finish(&mut walk);
        assert_eq!(a.string(&mut walk, "missing"), None);
        a.finish(&mut walk);
        root.finish(&mut walk);
        assert!(walk.is_present("a.src"));
        assert!(walk.is_present("a.other"));
        assert!(!walk.is_present("a.missing"));
        assert!(walk.into_problems().is_empty());
    }

    #[test]
    fn non_mapping_shapes_are_reported() {
        let doc = parse("server: 5\nlist: [a, 1]\n");
        let mut walk = Walk::new();
        let mut root = Section::root(Some(&doc));
        root.section(&mut walk, "server").finish(&mut walk);
        assert_eq!(root.strings(&mut walk, "list"), None);
        root.finish(&mut walk);
        assert_eq!(
            walk.into_problems(),
            vec![
                Problem::new("server", "must be a mapping"),
                Problem::new("list", "must be a list of strings"),
            ]
        );
    }

    #[test]
    fn big_unsigned_is_out_of_range() {
        let doc = parse("n: 18446744073709551615\n");
        let mut walk = Walk::new();
        let mut root = Section::root(Some(&doc));
        assert_eq!(root.int(&mut walk, "n"), None);
        root.finish(&mut walk);
        assert_eq!(
            walk.into_problems(),
            vec![Problem::new("n", "is out of range")]
        );
    }
}
