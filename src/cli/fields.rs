//! Ordered `key: value` reports (text) with the same keys as JSON objects,
//! for the rotation and retirement commands.

use super::report::OutputFormat;
use serde_json::Value;

/// One report entry: its JSON key and value, and its text lines.
#[derive(Debug)]
struct Field {
    key: &'static str,
    value: Value,
    text: Vec<String>,
}

/// An ordered list of report fields.
#[derive(Debug, Default)]
pub struct Fields(Vec<Field>);

impl Fields {
    pub fn put(&mut self, key: &'static str, value: impl Into<Value>) {
        let value = value.into();
        let shown = match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        self.0.push(Field {
            key,
            value,
            text: vec![format!("{key}: {shown}")],
        });
    }

    /// Replaces the value of an existing scalar field (or appends it).
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        match self.0.iter().position(|f| f.key == key) {
            Some(i) => {
                let mut replacement = Fields::default();
                replacement.put(key, value);
                if let Some(field) = replacement.0.pop() {
                    self.0[i] = field;
                }
            }
            None => self.put(key, value),
        }
    }

    /// A list: JSON array of objects under `key`; in text one line per item,
    /// `<text_key>: k=v k=v` with members in the given order.
    pub fn put_list(
        &mut self,
        key: &'static str,
        text_key: &'static str,
        items: Vec<Vec<(&'static str, Value)>>,
    ) {
        let text = items
            .iter()
            .map(|members| {
                let pairs: Vec<String> = members
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k}={s}"),
                        other => format!("{k}={other}"),
                    })
                    .collect();
                format!("{text_key}: {}", pairs.join(" "))
            })
            .collect();
        let value = Value::Array(
            items
                .into_iter()
                .map(|members| {
                    Value::Object(
                        members
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect(),
                    )
                })
                .collect(),
        );
        self.0.push(Field { key, value, text });
    }

    pub fn render(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Text => self
                .0
                .iter()
                .flat_map(|f| f.text.iter())
                .map(|line| format!("{line}\n"))
                .collect(),
            OutputFormat::Json => {
                let members: Vec<String> = self
                    .0
                    .iter()
                    .map(|f| {
                        let value = serde_json::to_string_pretty(&f.value)
                            .unwrap_or_default()
                            .replace('\n', "\n  ");
                        format!("  {}: {value}", Value::String(f.key.to_owned()))
                    })
                    .collect();
                format!("{{\n{}\n}}\n", members.join(",\n"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_ordered_text_and_json() {
        let mut f = Fields::default();
        f.put("applied", false);
        f.put("beforeVersion", 3);
        f.put_list(
            "removedVersions",
            "remove",
            vec![vec![
                ("transitVersion", 1.into()),
                ("keyIdHash", "h".into()),
            ]],
        );
        assert_eq!(
            f.render(OutputFormat::Text),
            "applied: false\nbeforeVersion: 3\nremove: transitVersion=1 keyIdHash=h\n"
        );
        let json: Value = serde_json::from_str(&f.render(OutputFormat::Json)).unwrap();
        assert_eq!(json["beforeVersion"], 3);
        assert!(
            f.render(OutputFormat::Json).find("applied")
                < f.render(OutputFormat::Json).find("beforeVersion")
        );
    }
}
