//! The URLs of peers we dial: `btp_url` (`ws://`, also `btp+ws://`) and `http_url`
//! (`http://`).
//!
//! Both parse to a [`BtpUrl`]: host, port and path, nothing resolved. `wss://` and `https://`
//! are refused with a message that says where TLS goes (a proxy in front of the router);
//! credentials in the URL are refused because tokens have their own keys. Every error names
//! the key and quotes the URL.

use core::fmt;
use std::net::Ipv6Addr;

use super::ConfigError;

/// Where to dial a peer: `ws://host:port/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtpUrl {
    /// Host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Request path, from `/` (`/` when the URL had none).
    pub path: String,
}

impl fmt::Display for BtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "ws://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "ws://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// `http://host:port[/path]` (no TLS: it terminates in front of the router).
pub(super) fn parse_http_url(key: &str, text: &str) -> Result<BtpUrl, ConfigError> {
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(ConfigError::invalid(
            key,
            format!("{text:?}: https:// is not supported: TLS terminates in front of the router; POST to a local TLS proxy at an http:// address"),
        ));
    }
    let Some(rest) = lower
        .starts_with("http://")
        .then(|| &text["http://".len()..])
    else {
        return Err(ConfigError::invalid(
            key,
            format!("{text:?}: not an http:// URL; write http://host:port[/path]"),
        ));
    };
    parse_btp_url(key, &format!("ws://{rest}")).map_err(|e| match e {
        ConfigError::Invalid { file, key, message } => ConfigError::Invalid {
            file,
            key,
            message: message
                .replace(&format!("ws://{rest}"), text)
                .replace("ws://host", "http://host"),
        },
        other => other,
    })
}

/// The form a `btp_url` must have, for error messages.
const WS_FORM: &str = "write ws://host:port[/path]";

/// `ws://host:port[/path]`, also with a `btp+` prefix (no TLS: it terminates in front of
/// the router).
pub(super) fn parse_btp_url(key: &str, text: &str) -> Result<BtpUrl, ConfigError> {
    let invalid = |what: String| ConfigError::invalid(key, format!("{text:?}: {what}"));
    let rest = strip_ws_scheme(text).map_err(invalid)?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    if let Some(ch) = path.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!("the path holds {ch:?}; {WS_FORM}")));
    }
    let (host, port) = parse_authority(authority).map_err(invalid)?;
    Ok(BtpUrl {
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// What follows `ws://` or `btp+ws://` (any case) in `text`, or why there is none.
fn strip_ws_scheme(text: &str) -> Result<&str, String> {
    let lower = text.to_ascii_lowercase();
    let lower = lower.strip_prefix("btp+").unwrap_or(&lower);
    if lower.starts_with("wss://") {
        return Err(
            "wss:// is not supported: the router speaks plain WebSocket and TLS \
                    terminates in front of it; dial a local TLS proxy (e.g. stunnel or Envoy) \
                    at a ws:// address and let it make the wss:// connection"
                .to_owned(),
        );
    }
    if !lower.starts_with("ws://") {
        return Err(format!("not a ws:// URL; {WS_FORM}"));
    }
    // The scheme is ASCII, so its length is the same in `text`.
    Ok(&text[text.len() - lower.len() + "ws://".len()..])
}

/// The host (an IPv6 address without brackets) and port of `host:port` or `[addr]:port`, or
/// what is wrong with it.
fn parse_authority(authority: &str) -> Result<(&str, u16), String> {
    if authority.contains('@') {
        return Err(
            "credentials in the URL are not used: put the token in outgoing_token \
                    and the username in outgoing_username"
                .to_owned(),
        );
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => split_ipv6_host(bracketed)?,
        None => split_host(authority)?,
    };
    // Digits only: `u16::from_str` would also take a leading `+`.
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(number) if digits && number > 0 => Ok((host, number)),
        _ => Err(format!("{port:?} is not a port (1..=65535)")),
    }
}

/// `addr]:port` (after the `[`): the IPv6 address and the port text.
fn split_ipv6_host(bracketed: &str) -> Result<(&str, &str), String> {
    let Some((ip, port)) = bracketed.split_once("]:") else {
        return Err(format!(
            "an IPv6 host must be written [addr]:port; {WS_FORM}"
        ));
    };
    if ip.parse::<Ipv6Addr>().is_err() {
        return Err(format!("{ip:?} is not an IPv6 address"));
    }
    Ok((ip, port))
}

/// `host:port` with a DNS name or IPv4 address: the host and the port text.
fn split_host(authority: &str) -> Result<(&str, &str), String> {
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(format!("no port; {WS_FORM}"));
    };
    if host.is_empty() {
        return Err(format!("no host; {WS_FORM}"));
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
