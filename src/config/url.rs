//! The URLs of peers we dial: `btp_url` (`ws://`, also `btp+ws://`) and `http_url`
//! (`http://`), every port written out.
//!
//! Both parse to a [`BtpUrl`] with [`crate::link::url::parse`], the parser `ilp-loadgen` uses
//! too; this module only names the key in its errors.

pub use crate::link::url::BtpUrl;
use crate::link::url::{parse, Scheme};

use super::ConfigError;

/// `http://host:port[/path]` (no TLS: it terminates in front of the router).
pub(super) fn parse_http_url(key: &str, text: &str) -> Result<BtpUrl, ConfigError> {
    parse(text, Scheme::Http, None).map_err(|message| ConfigError::invalid(key, message))
}

/// `ws://host:port[/path]`, also with a `btp+` prefix (no TLS: it terminates in front of
/// the router).
pub(super) fn parse_btp_url(key: &str, text: &str) -> Result<BtpUrl, ConfigError> {
    parse(text, Scheme::Ws, None).map_err(|message| ConfigError::invalid(key, message))
}
