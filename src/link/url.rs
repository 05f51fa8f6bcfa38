//! The URLs of peers we dial, one parser for the router's config and `ilp-loadgen` alike:
//! `ws://` and `wss://` (also `btp+ws://`, `btp+wss://`, any case), `http://` and `https://`.
//!
//! [`parse`] gives a [`BtpUrl`]: host, port, path and whether the connection is TLS, nothing
//! resolved. Credentials in the URL are refused because tokens have their own settings. An
//! error is a sentence that quotes the URL; the caller says which setting it came from.

use core::fmt;
use std::net::Ipv6Addr;

/// The schemes a peer's URL may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// BTP over WebSocket: `ws://` or `wss://`, also written `btp+ws://`, `btp+wss://`.
    Ws,
    /// ILP over HTTP: `http://` or `https://`.
    Http,
}

impl Scheme {
    /// The port a URL of this scheme means when it names none (RFC 6455 §3, RFC 9110 §4.2.1):
    /// 443 over TLS, 80 without.
    pub const fn default_port(self, tls: bool) -> u16 {
        if tls {
            443
        } else {
            80
        }
    }

    /// How a URL of this scheme is written, for error messages.
    const fn form(self) -> &'static str {
        match self {
            Scheme::Ws => "write ws://host:port[/path] or wss://host:port[/path]",
            Scheme::Http => "write http://host:port[/path] or https://host:port[/path]",
        }
    }
}

/// Where to dial a peer: host, port and path (`ws://host:port/path`, or the same for
/// `http://`), and whether over TLS (`wss://`, `https://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtpUrl {
    /// Host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Request path, from `/` (`/` when the URL had none).
    pub path: String,
    /// `wss://` or `https://`: the connection is TLS, and `host` is the name its certificate
    /// must hold.
    pub tls: bool,
}

impl BtpUrl {
    /// `host:port`, with an IPv6 address in brackets: what to connect to, and the `Host`
    /// header.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host_port(), self.path)
    }
}

/// Parses `text` as a URL of `scheme`: `scheme://host:port[/path]`, where host is a DNS name,
/// an IPv4 address or `[IPv6]`. Without a port, `default_port` is used, or the URL is refused
/// when that is `None` (the router's config wants every port written out).
pub fn parse(text: &str, scheme: Scheme, default_port: Option<u16>) -> Result<BtpUrl, String> {
    let form = scheme.form();
    let (rest, tls) = strip_scheme(text, scheme).map_err(|what| format!("{text:?}: {what}"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    if let Some(ch) = path.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{text:?}: the path holds {ch:?}; {form}"));
    }
    let (host, port) = parse_authority(authority, form, default_port)
        .map_err(|what| format!("{text:?}: {what}"))?;
    Ok(BtpUrl {
        host: host.to_owned(),
        port,
        path: path.to_owned(),
        tls,
    })
}

/// What follows the scheme (any case) in `text` and whether the scheme is TLS, or why there
/// is none.
fn strip_scheme(text: &str, scheme: Scheme) -> Result<(&str, bool), String> {
    let lower = text.to_ascii_lowercase();
    let (lower, secure, plain) = match scheme {
        Scheme::Ws => (
            lower.strip_prefix("btp+").unwrap_or(&lower),
            "wss://",
            "ws://",
        ),
        Scheme::Http => (lower.as_str(), "https://", "http://"),
    };
    let (prefix, tls) = if lower.starts_with(secure) {
        (secure, true)
    } else if lower.starts_with(plain) {
        (plain, false)
    } else {
        let article = if scheme == Scheme::Http { "an" } else { "a" };
        return Err(format!(
            "not {article} {plain} or {secure} URL; {}",
            scheme.form()
        ));
    };
    // The scheme is ASCII, so its length is the same in `text`.
    Ok((&text[text.len() - lower.len() + prefix.len()..], tls))
}

/// The host (an IPv6 address without brackets) and port of `host:port` or `[addr]:port`, or
/// what is wrong with it.
fn parse_authority<'a>(
    authority: &'a str,
    form: &str,
    default_port: Option<u16>,
) -> Result<(&'a str, u16), String> {
    if authority.contains('@') {
        return Err(
            "credentials in the URL are not used: put the token in outgoing_token \
                    and the username in outgoing_username"
                .to_owned(),
        );
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => split_ipv6_host(bracketed, form, default_port.is_some())?,
        None => split_host(authority, form, default_port.is_some())?,
    };
    let Some(port) = port else {
        // Only reached with a default.
        return Ok((host, default_port.unwrap_or(0)));
    };
    // Digits only: `u16::from_str` would also take a leading `+`.
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(number) if digits && number > 0 => Ok((host, number)),
        _ => Err(format!("{port:?} is not a port (1..=65535)")),
    }
}

/// `addr]:port` or, with a default port, `addr]` (after the `[`): the IPv6 address and the
/// port text.
fn split_ipv6_host<'a>(
    bracketed: &'a str,
    form: &str,
    port_optional: bool,
) -> Result<(&'a str, Option<&'a str>), String> {
    let split = match bracketed.split_once("]:") {
        Some((ip, port)) => Some((ip, Some(port))),
        None if port_optional => bracketed.strip_suffix(']').map(|ip| (ip, None)),
        None => None,
    };
    let Some((ip, port)) = split else {
        return Err(format!("an IPv6 host must be written [addr]:port; {form}"));
    };
    if ip.parse::<Ipv6Addr>().is_err() {
        return Err(format!("{ip:?} is not an IPv6 address"));
    }
    Ok((ip, port))
}

/// `host:port` (or, with a default port, `host`) with a DNS name or IPv4 address: the host
/// and the port text.
fn split_host<'a>(
    authority: &'a str,
    form: &str,
    port_optional: bool,
) -> Result<(&'a str, Option<&'a str>), String> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None if port_optional => (authority, None),
        None => return Err(format!("no port; {form}")),
    };
    if host.is_empty() {
        return Err(format!("no host; {form}"));
    }
    if let Some(ch) = host
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "the host holds {ch:?}; a host is a DNS name, an IPv4 address or [IPv6]"
        ));
    }
    Ok((host, port))
}

#[cfg(test)]
mod test {
    use super::*;

    fn ws(text: &str) -> Result<BtpUrl, String> {
        parse(text, Scheme::Ws, None)
    }

    #[test]
    fn schemes_and_their_refusals() {
        let url = ws("btp+WS://Bob.example:7768/accounts/a/ilp/btp").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("Bob.example", 7768, "/accounts/a/ilp/btp")
        );
        let url = parse("HTTP://10.0.0.1:8080", Scheme::Http, None).unwrap();
        assert_eq!((url.port, url.path.as_str()), (8080, "/"));
        assert!(!url.tls);
        let url = ws("btp+WSS://bob.example:443/x").unwrap();
        assert!(url.tls);
        assert_eq!(url.to_string(), "wss://bob.example:443/x");
        assert!(ws("wss://a:1").unwrap().tls);
        assert!(ws("http://a:1")
            .unwrap_err()
            .contains("not a ws:// or wss:// URL"));
        assert!(parse("https://a:1", Scheme::Http, None).unwrap().tls);
        let not_http = parse("ws://a:1", Scheme::Http, None).unwrap_err();
        assert_eq!(
            not_http,
            "\"ws://a:1\": not an http:// or https:// URL; \
             write http://host:port[/path] or https://host:port[/path]"
        );
        assert_eq!(
            parse("http://a", Scheme::Http, None).unwrap_err(),
            "\"http://a\": no port; write http://host:port[/path] or https://host:port[/path]"
        );
    }

    #[test]
    fn default_ports_only_where_asked() {
        assert!(ws("ws://bob").unwrap_err().contains("no port"));
        let url = parse("http://bob/ilp", Scheme::Http, Some(80)).unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("bob", 80, "/ilp")
        );
        let url = parse("http://[::1]/", Scheme::Http, Some(80)).unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 80));
        assert!(parse("http://[::1]", Scheme::Ws, Some(80)).is_err());
        assert_eq!(Scheme::Ws.default_port(false), 80);
        assert_eq!(Scheme::Http.default_port(true), 443);
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets_where_needed() {
        let url = ws("ws://[::1]:9000").unwrap();
        assert_eq!(url.host, "::1");
        assert_eq!(url.host_port(), "[::1]:9000");
        assert_eq!(url.to_string(), "ws://[::1]:9000/");
        let url = ws("ws://127.0.0.1:9000/x").unwrap();
        assert_eq!(url.host_port(), "127.0.0.1:9000");
        assert_eq!(url.to_string(), "ws://127.0.0.1:9000/x");
    }
}
