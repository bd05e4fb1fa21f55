//! Reusable, pure value rules from spec config §1.2.
//!
//! Each check returns the problem message (never the value) so callers can
//! attach their own field name. Other layers reuse these: the identity code
//! needs the identifier and namespace rules, the OpenBao client the URL split,
//! the listeners the host:port parse. The URL and host:port parsers follow Go's
//! `net/url` and `net` behaviour closely, because configs are shared with the
//! Go reference and what it accepts should not silently change meaning here.

use std::net::IpAddr;

pub const IDENTIFIER_MESSAGE: &str =
    "must not contain control characters or surrounding whitespace";
pub const KEY_NAME_MESSAGE: &str = "must start and end with an ASCII letter, digit, or underscore; interior characters may also be dots or hyphens";
pub const OPENBAO_ADDRESS_MESSAGE: &str =
    "must be an https URL with a host and no user info, query, or fragment";
pub const TOKEN_URL_MESSAGE: &str = "must be an https URL without user info or fragment";
pub const RESOURCE_MESSAGE: &str = "must contain absolute URIs without user info or fragments";
pub const SCOPE_MESSAGE: &str = "must contain only non-empty OAuth scope tokens";
pub const CONTROL_MESSAGE: &str = "must not contain control characters";
pub const HOST_PORT_MESSAGE: &str = "must be host:port with a numeric port";
pub const SOCKET_MODE_SYNTAX_MESSAGE: &str = "must be an octal permission mode such as 0660";
pub const SOCKET_MODE_RANGE_MESSAGE: &str = "must be a permission mode";
pub const SOCKET_GROUP_GID_MESSAGE: &str = "numeric group ID must fit in a signed 32-bit integer";

/// Runtime directories the KMS socket may live in (or below).
pub const SOCKET_PARENT_DIRS: [&str; 2] = ["/run/openbao-kms", "/var/run/openbao-kms"];

/// Identifier rule: non-empty, no leading/trailing whitespace, no control
/// character (C0, DEL or C1; the reference only refuses NUL, CR, LF and TAB).
///
/// Optional fields check this only when set; the empty case is reported here
/// so callers that need a value (key_id scope parts) get one rule. The
/// stricter control rule keeps every accepted value printable in the files
/// `init` renders (an EncryptionConfiguration its own parser reads back).
pub fn check_identifier(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("must not be empty");
    }
    // Go's strings.TrimSpace trims Unicode White_Space, like char::is_whitespace.
    if value.trim() != value || value.chars().any(char::is_control) {
        return Err(IDENTIFIER_MESSAGE);
    }
    Ok(())
}

/// Mount-path rule: identifier, relative, no `//`, and no empty, `.` or `..`
/// segment (so no trailing `/` either). Paths are spliced into API URLs.
pub fn check_mount_path(value: &str) -> Result<(), &'static str> {
    check_identifier(value)?;
    if value.starts_with('/') || value.contains("//") {
        return Err("must be a relative OpenBao path");
    }
    check_segments(value)
}

/// Namespace rule: empty (root namespace) or a relative identifier path
/// without `%` (no percent-encoding games in the `X-Vault-Namespace` header).
pub fn check_namespace(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Ok(());
    }
    check_identifier(value)?;
    if value.starts_with('/') || value.contains("//") || value.contains('%') {
        return Err("must be a relative OpenBao namespace path without percent encoding");
    }
    check_segments(value)
}

fn check_segments(value: &str) -> Result<(), &'static str> {
    if value
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err("must not contain empty, dot, or dot-dot path segments");
    }
    Ok(())
}

/// OpenBao's `GenericNameRegex` for Transit key names:
/// `^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$`.
pub fn check_transit_key_name(value: &str) -> Result<(), &'static str> {
    let edge = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let inner = |b: u8| edge(b) || b == b'.' || b == b'-';
    let ok = match value.as_bytes() {
        [] => false,
        [only] => edge(*only),
        [first, middle @ .., last] => {
            edge(*first) && edge(*last) && middle.iter().all(|&b| inner(b))
        }
    };
    if ok { Ok(()) } else { Err(KEY_NAME_MESSAGE) }
}

/// No Unicode control characters (Go `unicode.IsControl`, i.e. category Cc).
pub fn check_no_control(value: &str) -> Result<(), &'static str> {
    if value.chars().any(char::is_control) {
        Err(CONTROL_MESSAGE)
    } else {
        Ok(())
    }
}

/// `openbao.address`: https, a host, no user info, query or fragment. A path
/// prefix is allowed; API paths are appended after it.
pub fn check_openbao_address(value: &str) -> Result<(), &'static str> {
    let url = split_url(value).ok_or(OPENBAO_ADDRESS_MESSAGE)?;
    let ok = url.scheme == "https"
        && url.opaque.is_none()
        && url.userinfo.is_none()
        && !url.hostname().is_empty()
        && url.query.is_none()
        && url.fragment.is_none();
    if ok {
        Ok(())
    } else {
        Err(OPENBAO_ADDRESS_MESSAGE)
    }
}

/// `auth.jwt.oauth2.tokenUrl`: https, a host name, no user info or fragment,
/// not opaque. A fixed query string is allowed.
pub fn check_token_url(value: &str) -> Result<(), &'static str> {
    let url = split_url(value).ok_or(TOKEN_URL_MESSAGE)?;
    let ok = url.scheme == "https"
        && url.opaque.is_none()
        && url.userinfo.is_none()
        && !url.hostname().is_empty()
        && url.fragment.is_none();
    if ok { Ok(()) } else { Err(TOKEN_URL_MESSAGE) }
}

/// An RFC 8707 `resource` indicator: an absolute URI (opaque ones such as
/// `urn:...` included) without user info or fragment.
pub fn check_resource_uri(value: &str) -> Result<(), &'static str> {
    let url = split_url(value).ok_or(RESOURCE_MESSAGE)?;
    if url.scheme.is_empty() || url.userinfo.is_some() || url.fragment.is_some() {
        return Err(RESOURCE_MESSAGE);
    }
    Ok(())
}

/// An OAuth scope token (RFC 6749 §3.3): non-empty, bytes 0x21..=0x7E except `"` and `\`.
pub fn check_scope(value: &str) -> Result<(), &'static str> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
    if ok { Ok(()) } else { Err(SCOPE_MESSAGE) }
}

/// A URL split the way Go's `url.Parse` splits it, borrowed from the input.
///
/// Only the shape is checked (scheme syntax, authority, port digits, host
/// characters, percent escapes); nothing is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// Lowercased; empty when the input has no scheme.
    pub scheme: String,
    /// Everything after `scheme:` when it does not start with `/` (`urn:x:y`).
    pub opaque: Option<&'a str>,
    /// The part before the last `@` of the authority, if there is an `@`.
    pub userinfo: Option<&'a str>,
    /// Host with optional `:port`, brackets kept for IPv6 literals.
    pub host: &'a str,
    pub path: &'a str,
    /// After the first `?`, when there is a `?`.
    pub query: Option<&'a str>,
    /// After the first `#`, when there is a `#`.
    pub fragment: Option<&'a str>,
}

impl UrlParts<'_> {
    /// The host without port or IPv6 brackets (Go `URL.Hostname`).
    pub fn hostname(&self) -> &str {
        let mut host = self.host;
        if let Some(colon) = host.rfind(':')
            && valid_optional_port(&host[colon..])
        {
            host = &host[..colon];
        }
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    /// The explicit port digits, if any.
    pub fn port(&self) -> Option<&str> {
        let colon = self.host.rfind(':')?;
        let port = &self.host[colon..];
        if valid_optional_port(port) && port.len() > 1 {
            Some(&port[1..])
        } else {
            None
        }
    }
}

/// Splits `value` like Go's `url.Parse`; `None` where Go returns an error.
/// ASCII control characters are refused anywhere, fragment included.
pub fn split_url(value: &str) -> Option<UrlParts<'_>> {
    if value.bytes().any(|b| b < b' ' || b == 0x7f) {
        return None;
    }
    let (rest, fragment) = match value.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (value, None),
    };
    if let Some(fragment) = fragment {
        check_escapes(fragment)?;
    }
    let (scheme, rest) = split_scheme(rest)?;
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let mut parts = UrlParts {
        scheme: scheme.to_ascii_lowercase(),
        opaque: None,
        userinfo: None,
        host: "",
        path: "",
        query,
        fragment,
    };
    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            parts.opaque = Some(rest);
            return Some(parts);
        }
        // Go refuses "a:b/c"-like relative references that look like a scheme.
        if rest.split('/').next().is_some_and(|seg| seg.contains(':')) {
            return None;
        }
    }
    let mut path = rest;
    if let Some(after) = rest.strip_prefix("//")
        && (!scheme.is_empty() || !rest.starts_with("///"))
    {
        let (authority, tail) = match after.find('/') {
            Some(i) => after.split_at(i),
            None => (after, ""),
        };
        let host = match authority.rfind('@') {
            Some(at) => {
                parts.userinfo = Some(&authority[..at]);
                &authority[at + 1..]
            }
            None => authority,
        };
        check_host(host)?;
        parts.host = host;
        path = tail;
    }
    check_escapes(path)?;
    parts.path = path;
    Some(parts)
}

/// Go `getScheme`: letters first, then letters, digits, `+ - .` up to `:`.
/// A leading `:` is an error; any other character means "no scheme".
fn split_scheme(value: &str) -> Option<(&str, &str)> {
    for (i, b) in value.bytes().enumerate() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return None,
            b':' => return Some((&value[..i], &value[i + 1..])),
            _ => return Some(("", value)),
        }
    }
    Some(("", value))
}

/// Go `parseHost`: bracketed IPv6 literal or name, optional `:digits` port,
/// only host-safe characters, `%` only as `%25` or a non-ASCII escape.
fn check_host(host: &str) -> Option<()> {
    if host.starts_with('[') {
        let close = host.rfind(']')?;
        if !valid_optional_port(&host[close + 1..]) {
            return None;
        }
    } else if let Some(colon) = host.rfind(':')
        && !valid_optional_port(&host[colon..])
    {
        return None;
    }
    let bytes = host.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value)?;
            bytes.get(i + 2).copied().and_then(hex_value)?;
            if hi < 8 && host.get(i..i + 3) != Some("%25") {
                return None;
            }
            i += 3;
            continue;
        }
        let allowed =
            b >= 0x80 || b.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"".contains(&b);
        if !allowed {
            return None;
        }
        i += 1;
    }
    Some(())
}

/// Every `%` must start a two-hex-digit escape.
fn check_escapes(value: &str) -> Option<()> {
    let bytes = value.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            bytes.get(i + 1).copied().and_then(hex_value)?;
            bytes.get(i + 2).copied().and_then(hex_value)?;
            i += 3;
        } else {
            i += 1;
        }
    }
    Some(())
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Go `validOptionalPort`: empty, or `:` followed by digits only.
fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// A listener address split into host and numeric port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Without IPv6 brackets; empty means all interfaces.
    pub host: String,
    pub port: u16,
}

/// Parses `host:port` like Go's `net.SplitHostPort` (IPv6 in brackets), and
/// additionally requires a decimal port ≤ 65535: named ports would need a
/// services lookup, which a pre-apiserver daemon should not depend on.
pub fn parse_host_port(value: &str) -> Result<HostPort, &'static str> {
    let (host, port) = split_host_port(value).ok_or(HOST_PORT_MESSAGE)?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HOST_PORT_MESSAGE);
    }
    // Leading zeros are allowed ("0080" is port 80), so parse after trimming them.
    let trimmed = port.trim_start_matches('0');
    let port = if trimmed.is_empty() {
        0
    } else if trimmed.len() > 5 {
        return Err(HOST_PORT_MESSAGE);
    } else {
        trimmed.parse::<u16>().map_err(|_| HOST_PORT_MESSAGE)?
    };
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}

/// Go `net.SplitHostPort`.
fn split_host_port(value: &str) -> Option<(&str, &str)> {
    let last_colon = value.rfind(':')?;
    let (host, skip_open, skip_close) = if value.starts_with('[') {
        let end = value.find(']')?;
        if end + 1 != last_colon {
            return None;
        }
        (&value[1..end], 1, end + 1)
    } else {
        let host = &value[..last_colon];
        if host.contains(':') {
            return None;
        }
        (host, 0, 0)
    };
    if value[skip_open..].contains('[') || value[skip_close..].contains(']') {
        return None;
    }
    Some((host, &value[last_colon + 1..]))
}

/// Whether two listener addresses name the same fixed socket: same non-zero
/// port and the same host (IP literals compared after IPv4-mapped unmapping,
/// names case-insensitively; no DNS). Unparsable or empty addresses never do.
pub fn same_fixed_listener(first: &str, second: &str) -> bool {
    let (Ok(a), Ok(b)) = (parse_host_port(first), parse_host_port(second)) else {
        return false;
    };
    if a.port == 0 || a.port != b.port {
        return false;
    }
    match (parse_ip(&a.host), parse_ip(&b.host)) {
        (Some(x), Some(y)) => x == y,
        _ => a.host.eq_ignore_ascii_case(&b.host),
    }
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    let ip: IpAddr = host.parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    })
}

/// Parses `server.socketMode` like Go `strconv.ParseUint(v, 8, 32)` and
/// requires a plain permission mode (≤ 0o777).
pub fn parse_socket_mode(value: &str) -> Result<u32, &'static str> {
    if value.is_empty() || !value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(SOCKET_MODE_SYNTAX_MESSAGE);
    }
    let mode = u32::from_str_radix(value, 8).map_err(|_| SOCKET_MODE_SYNTAX_MESSAGE)?;
    // 0 would leave a socket nobody (not even the apiserver) can connect to.
    if mode == 0 || mode > 0o777 {
        return Err(SOCKET_MODE_RANGE_MESSAGE);
    }
    Ok(mode)
}

/// `server.socketGroup`: all digits means a numeric GID, which must fit `i32`
/// (the reference's limit); anything else is a group name resolved later.
pub fn check_socket_group(value: &str) -> Result<(), &'static str> {
    if !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && value.parse::<i32>().is_err()
    {
        return Err(SOCKET_GROUP_GID_MESSAGE);
    }
    Ok(())
}

/// Go `filepath.Clean` for Unix paths: purely lexical.
pub fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go `filepath.Dir`: everything before the last `/`, cleaned.
pub fn parent_dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => clean_path(&path[..=i]),
        None => ".".to_owned(),
    }
}

/// Whether the socket's cleaned parent directory is one of
/// [`SOCKET_PARENT_DIRS`] or below one: the socket must live in a runtime
/// directory that systemd or the packaging creates with tight permissions.
pub fn socket_dir_allowed(socket_path: &str) -> bool {
    let parent = parent_dir(socket_path);
    SOCKET_PARENT_DIRS.iter().any(|root| {
        parent == *root
            || parent
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["a", "bao-prod-a", "with inner space", "ünï"] {
            assert_eq!(check_identifier(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(check_identifier(""), Err("must not be empty"));
        for bad in [
            " a", "a ", "a\tb", "a\nb", "a\rb", "a\0b", "\u{a0}a", "a\u{7f}b", "a\u{1b}b",
            "a\u{85}b", "a\u{9f}b",
        ] {
            assert_eq!(check_identifier(bad), Err(IDENTIFIER_MESSAGE), "{bad:?}");
        }
    }

    #[test]
    fn mount_paths() {
        for ok in ["transit", "auth/k8s-workload-a-jwt", "a/b/c", "a.b"] {
            assert_eq!(check_mount_path(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "/transit", "a//b", "a/", "a/./b", "../a", "a/..", ".", " a", "",
        ] {
            assert!(check_mount_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn namespaces() {
        for ok in ["", "admin", "admin/workload-a"] {
            assert_eq!(check_namespace(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "/admin", "admin/", "a//b", "a%2Fb", "a/../b", " admin", "a\nb",
        ] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn transit_key_names() {
        for ok in ["k", "_", "0123", "k8s-workload-a-etcd", "a.b_c-d9", "A_"] {
            assert_eq!(check_transit_key_name(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", "-a", "a-", ".a", "a.", "a b", "a/b", "é", "a\n"] {
            assert_eq!(
                check_transit_key_name(bad),
                Err(KEY_NAME_MESSAGE),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn openbao_addresses() {
        for ok in [
            "https://bao.example.internal:8200",
            "https://bao.example.internal",
            "HTTPS://bao:8200/prefix/path",
            "https://[::1]:8200",
            "https://127.0.0.1:8200/",
        ] {
            assert_eq!(check_openbao_address(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            "http://bao:8200",
            "bao:8200",
            "https://",
            "https:///path",
            "https://:8200",
            "https://user@bao:8200",
            "https://user:pw@bao",
            "https://bao:8200?x=1",
            "https://bao:8200#frag",
            "https://bao:port",
            "https://bao:8200/a%zz",
            "https://ba o",
            "https:opaque",
            "https://bao\n",
            "://bao",
        ] {
            assert_eq!(
                check_openbao_address(bad),
                Err(OPENBAO_ADDRESS_MESSAGE),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn token_urls() {
        for ok in [
            "https://identity.example.com/realms/platform/protocol/openid-connect/token",
            "https://issuer.example/token?tenant=a&x=1",
            "https://issuer.example:8443/token",
        ] {
            assert_eq!(check_token_url(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "http://issuer.example/token",
            "https://u@issuer.example/token",
            "https://issuer.example/token#f",
            "https:issuer.example",
            "https://:443/token",
            "",
        ] {
            assert_eq!(check_token_url(bad), Err(TOKEN_URL_MESSAGE), "{bad:?}");
        }
    }

    #[test]
    fn resources_and_scopes() {
        for ok in [
            "urn:bao:production",
            "https://api.example/x",
            "https://api.example?q=1",
        ] {
            assert_eq!(check_resource_uri(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "relative/path",
            "/abs/path",
            "https://u@h/",
            "urn:x#frag",
            "",
        ] {
            assert_eq!(check_resource_uri(bad), Err(RESOURCE_MESSAGE), "{bad:?}");
        }
        for ok in ["read", "api:write", "a/b!#$"] {
            assert_eq!(check_scope(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", "a b", "a\"b", "a\\b", "é", "a\u{7f}"] {
            assert_eq!(check_scope(bad), Err(SCOPE_MESSAGE), "{bad:?}");
        }
    }

    #[test]
    fn url_split() {
        let url = split_url("https://h.example:8200/base?x=1#f").unwrap();
        assert_eq!(url.scheme, "https");
        assert_eq!(url.host, "h.example:8200");
        assert_eq!(url.hostname(), "h.example");
        assert_eq!(url.port(), Some("8200"));
        assert_eq!(url.path, "/base");
        assert_eq!(url.query, Some("x=1"));
        assert_eq!(url.fragment, Some("f"));
        let v6 = split_url("https://[fe80::1]:443").unwrap();
        assert_eq!(v6.hostname(), "fe80::1");
        assert_eq!(v6.port(), Some("443"));
        assert_eq!(split_url("https://[::1").map(|u| u.host), None);
    }

    #[test]
    fn host_ports() {
        assert_eq!(
            parse_host_port("127.0.0.1:8081"),
            Ok(HostPort {
                host: "127.0.0.1".into(),
                port: 8081
            })
        );
        assert_eq!(
            parse_host_port("[::1]:0080"),
            Ok(HostPort {
                host: "::1".into(),
                port: 80
            })
        );
        assert_eq!(
            parse_host_port(":0"),
            Ok(HostPort {
                host: String::new(),
                port: 0
            })
        );
        assert_eq!(
            parse_host_port("localhost:65535").map(|h| h.port),
            Ok(65535)
        );
        for bad in [
            "127.0.0.1",
            "127.0.0.1:",
            "::1:80",
            "[::1]80",
            "[::1]",
            "a:b",
            "h:65536",
            "h:http",
            "h:-1",
            "[a]b]:1",
            "h]:1",
            "h:0000000000000000080x",
        ] {
            assert_eq!(parse_host_port(bad), Err(HOST_PORT_MESSAGE), "{bad:?}");
        }
        assert_eq!(
            parse_host_port("h:0000000000000000080").map(|h| h.port),
            Ok(80)
        );
    }

    #[test]
    fn fixed_listener_conflicts() {
        assert!(same_fixed_listener("127.0.0.1:8081", "127.0.0.1:8081"));
        assert!(same_fixed_listener("127.0.0.1:80", "127.0.0.1:0080"));
        assert!(same_fixed_listener("[::ffff:127.0.0.1]:9", "127.0.0.1:9"));
        assert!(same_fixed_listener("LocalHost:9", "localhost:9"));
        assert!(same_fixed_listener(":9", ":9"));
        assert!(!same_fixed_listener("127.0.0.1:0", "127.0.0.1:0"));
        assert!(!same_fixed_listener("127.0.0.1:8081", "127.0.0.1:8082"));
        assert!(!same_fixed_listener("127.0.0.1:9", "localhost:9"));
        assert!(!same_fixed_listener("", ""));
        assert!(!same_fixed_listener("", "127.0.0.1:9"));
    }

    #[test]
    fn socket_modes() {
        assert_eq!(parse_socket_mode("0660"), Ok(0o660));
        assert_eq!(parse_socket_mode("660"), Ok(0o660));
        assert_eq!(parse_socket_mode("0"), Err(SOCKET_MODE_RANGE_MESSAGE));
        assert_eq!(parse_socket_mode("00000777"), Ok(0o777));
        assert_eq!(parse_socket_mode("1000"), Err(SOCKET_MODE_RANGE_MESSAGE));
        assert_eq!(parse_socket_mode("0000"), Err(SOCKET_MODE_RANGE_MESSAGE));
        for bad in [
            "",
            "0o660",
            "0x1",
            "0668",
            "+660",
            " 660",
            "rw-rw----",
            "077777777777",
        ] {
            assert_eq!(
                parse_socket_mode(bad),
                Err(SOCKET_MODE_SYNTAX_MESSAGE),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn socket_groups() {
        for ok in ["openbao-kms-socket", "1234", "0", "2147483647", "group1"] {
            assert_eq!(check_socket_group(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(
            check_socket_group("2147483648"),
            Err(SOCKET_GROUP_GID_MESSAGE)
        );
        assert_eq!(
            check_socket_group("99999999999999999999"),
            Err(SOCKET_GROUP_GID_MESSAGE)
        );
    }

    #[test]
    fn go_clean_and_dir() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("//a//b/", "/a/b"),
            ("/a/./b/../c", "/a/c"),
            ("/../a", "/a"),
            ("a/../..", ".."),
            ("a/..", "."),
            ("../../x", "../../x"),
        ] {
            assert_eq!(clean_path(input), want, "{input:?}");
        }
        assert_eq!(parent_dir("/run/openbao-kms/kms.sock"), "/run/openbao-kms");
        assert_eq!(parent_dir("/run/openbao-kms/"), "/run/openbao-kms");
        assert_eq!(parent_dir("kms.sock"), ".");
        assert_eq!(parent_dir("/kms.sock"), "/");
    }

    #[test]
    fn socket_directories() {
        for ok in [
            "/run/openbao-kms/kms.sock",
            "/var/run/openbao-kms/kms.sock",
            "/run/openbao-kms/sub/kms.sock",
            "/run/openbao-kms//kms.sock",
            "/run/openbao-kms/x/../kms.sock",
        ] {
            assert!(socket_dir_allowed(ok), "{ok:?}");
        }
        for bad in [
            "/tmp/kms.sock",
            "/run/openbao-kms.sock",
            "/run/openbao-kms-evil/kms.sock",
            "/run/openbao-kms/../kms.sock",
            "/run/openbao-kms/../../tmp/kms.sock",
            "run/openbao-kms/kms.sock",
            "kms.sock",
        ] {
            assert!(!socket_dir_allowed(bad), "{bad:?}");
        }
    }
}
