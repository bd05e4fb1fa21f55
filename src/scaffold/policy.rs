//! The least-privilege OpenBao token policy (spec config §5.1), printed by
//! `policy openbao` and written by `init` as `openbao-policy.hcl`, so the
//! two can never drift apart.

/// One `path` stanza: the comment above it, the path, the one capability.
struct Stanza {
    comment: &'static str,
    path: String,
    capability: &'static str,
}

/// Whether the `auth/token/renew-self` stanza is included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRenewal {
    Include,
    Omit,
}

/// The policy for `mount` and `key` in the reference's order and layout.
///
/// Mount paths and key names passed config validation (no `//`, no empty,
/// `.` or `..` segment), so joining with `/` equals Go's `path.Join`.
pub fn render(mount: &str, key: &str, renewal: TokenRenewal) -> String {
    let mut stanzas = vec![
        Stanza {
            comment: "Read Transit key metadata.",
            path: format!("{mount}/keys/{key}"),
            capability: "read",
        },
        Stanza {
            comment: "Encrypt with the existing key.",
            path: format!("{mount}/encrypt/{key}"),
            capability: "update",
        },
        Stanza {
            comment: "Decrypt existing ciphertext.",
            path: format!("{mount}/decrypt/{key}"),
            capability: "update",
        },
        Stanza {
            comment: "Inspect Transit disable_upsert.",
            path: format!("{mount}/config/keys"),
            capability: "read",
        },
        Stanza {
            comment: "Allow doctor to inspect this token's capabilities.",
            path: "sys/capabilities-self".to_owned(),
            capability: "update",
        },
    ];
    if renewal == TokenRenewal::Include {
        stanzas.push(Stanza {
            comment: "Allow token renewal when the auth role disables the default policy.",
            path: "auth/token/renew-self".to_owned(),
            capability: "update",
        });
    }
    stanzas
        .iter()
        .map(|s| {
            format!(
                "# {}\npath {} {{\n  capabilities = [{}]\n}}\n\n",
                s.comment,
                hcl_string(&s.path),
                hcl_string(s.capability)
            )
        })
        .collect()
}

/// A double-quoted HCL string. Mount paths may legally contain `"` or `\`
/// (the identifier rule allows them), so both are escaped; control
/// characters cannot occur (validation refuses them).
fn hcl_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::{TokenRenewal, render};

    #[test]
    fn six_stanzas_in_reference_order() {
        let text = render("transit", "k8s-a", TokenRenewal::Include);
        let expected = concat!(
            "# Read Transit key metadata.\n",
            "path \"transit/keys/k8s-a\" {\n  capabilities = [\"read\"]\n}\n\n",
            "# Encrypt with the existing key.\n",
            "path \"transit/encrypt/k8s-a\" {\n  capabilities = [\"update\"]\n}\n\n",
            "# Decrypt existing ciphertext.\n",
            "path \"transit/decrypt/k8s-a\" {\n  capabilities = [\"update\"]\n}\n\n",
            "# Inspect Transit disable_upsert.\n",
            "path \"transit/config/keys\" {\n  capabilities = [\"read\"]\n}\n\n",
            "# Allow doctor to inspect this token's capabilities.\n",
            "path \"sys/capabilities-self\" {\n  capabilities = [\"update\"]\n}\n\n",
            "# Allow token renewal when the auth role disables the default policy.\n",
            "path \"auth/token/renew-self\" {\n  capabilities = [\"update\"]\n}\n\n",
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn renewal_can_be_omitted_and_quotes_are_escaped() {
        let text = render("team/\"x\"", "k", TokenRenewal::Omit);
        assert!(!text.contains("renew-self"));
        assert_eq!(text.matches("path ").count(), 5);
        assert!(text.contains(r#"path "team/\"x\"/keys/k" {"#));
    }
}
