//! Why a configuration was refused, and the names of the keys at fault.
//!
//! Every [`ConfigError::Invalid`] names the key path as the operator wrote it
//! (`peers[1].asset_scale`, `rates."E R"`, `limits.tick_ms`); the helpers here build those
//! paths and find the line, column and key of a TOML parser error. No message quotes a secret.

use core::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a configuration was refused. `Display` gives a message an operator can act on.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Not TOML of the expected shape: a syntax error, an unknown or missing key, or a value
    /// of the wrong type. The message comes from the TOML parser and names the key.
    Syntax {
        /// The file, when read by [`Config::load`](super::Config::load).
        file: Option<PathBuf>,
        /// Line and column of the problem, both from 1, when the parser knows them.
        at: Option<(usize, usize)>,
        /// What is wrong.
        message: String,
    },
    /// A key's value is well-formed but not acceptable.
    Invalid {
        /// The file, when read by [`Config::load`](super::Config::load).
        file: Option<PathBuf>,
        /// The key path, e.g. `peers[1].asset_scale` (indices from 0, in file order).
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

impl ConfigError {
    pub(super) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: None,
            key: key.into(),
            message: message.into(),
        }
    }

    pub(super) fn syntax(text: &str, error: &toml::de::Error) -> ConfigError {
        let at = error.span().map(|span| line_column(text, span.start));
        let mut message = error.message().trim_end().to_owned();
        // A wrong value's span is the value: name the key written before it on its line.
        if let Some(key) = error.span().and_then(|span| key_before(text, span.start)) {
            if !message.contains(&format!("`{key}`")) {
                message = format!("{key}: {message}");
            }
        }
        ConfigError::Syntax {
            file: None,
            at,
            message,
        }
    }

    pub(super) fn in_file(mut self, path: &Path) -> ConfigError {
        match &mut self {
            ConfigError::Read { .. } => {}
            ConfigError::Syntax { file, .. } | ConfigError::Invalid { file, .. } => {
                *file = Some(path.to_owned());
            }
        }
        self
    }

    /// The key path of an [`Invalid`](ConfigError::Invalid) value.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Line and column (from 1, column in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The bare key of a `key = value` line, when byte `offset` is in its value.
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?;
    let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    bare.then_some(key)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Syntax { file, at, message } => {
                if let Some(file) = file {
                    write!(f, "{}: ", file.display())?;
                }
                if let Some((line, column)) = at {
                    write!(f, "line {line}, column {column}: ")?;
                }
                f.write_str(message)
            }
            ConfigError::Invalid { file, key, message } => {
                if let Some(file) = file {
                    write!(f, "{}: ", file.display())?;
                }
                write!(f, "{key}: {message}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The key of `field` in the `i`-th `[[peers]]` entry: `peers[i].field`.
pub(super) fn peer_key(i: usize, field: &str) -> String {
    format!("peers[{i}].{field}")
}

/// `code` as a TOML key: bare when it can be, quoted otherwise.
pub(super) fn toml_key(code: &str) -> String {
    let bare = !code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if bare {
        code.to_owned()
    } else {
        format!("{code:?}")
    }
}
