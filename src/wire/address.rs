//! ILP addresses (RFC 15), checked by a byte scan.
//!
//! ```text
//! address = scheme 1*( "." segment )        ; 1..=1023 bytes in all
//! scheme  = "g" / "private" / "example" / "peer" / "self" / "test" / "test1" / "test2"
//!         / "test3" / "local"
//! segment = 1*( ALPHA / DIGIT / "_" / "~" / "-" )
//! ```

use super::Error;
use core::fmt;

/// The longest ILP address, in bytes (RFC 15).
pub const ADDRESS_LEN_MAX: usize = 1023;
/// The shortest ILP address (`g.a`).
pub const ADDRESS_LEN_MIN: usize = 3;

const SCHEMES: [&[u8]; 10] = [
    b"g", b"private", b"example", b"peer", b"self", b"test", b"test1", b"test2", b"test3", b"local",
];

/// `SEGMENT_BYTE[b]` is true when `b` may appear in a segment.
static SEGMENT_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'~' || c == b'-';
        b += 1;
    }
    table
};

/// Checks `bytes` against the RFC 15 grammar and length limit.
#[inline]
pub fn check_address(bytes: &[u8]) -> Result<(), Error> {
    if bytes.len() < ADDRESS_LEN_MIN || bytes.len() > ADDRESS_LEN_MAX {
        return Err(Error::InvalidAddress);
    }
    // The longest scheme is 7 bytes, so the first dot is among the first 8.
    let head = &bytes[..bytes.len().min(8)];
    let Some(dot) = head.iter().position(|&b| b == b'.') else {
        return Err(Error::InvalidAddress);
    };
    if !SCHEMES.contains(&&bytes[..dot]) {
        return Err(Error::InvalidAddress);
    }
    // After the scheme: one or more ".segment", each segment non-empty.
    let mut previous_was_dot = true; // bytes[dot] is a dot
    for &b in &bytes[dot + 1..] {
        if b == b'.' {
            if previous_was_dot {
                return Err(Error::InvalidAddress);
            }
            previous_was_dot = true;
        } else if SEGMENT_BYTE[usize::from(b)] {
            previous_was_dot = false;
        } else {
            return Err(Error::InvalidAddress);
        }
    }
    if previous_was_dot {
        return Err(Error::InvalidAddress);
    }
    Ok(())
}

/// A borrowed, checked ILP address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address<'a>(&'a [u8]);

impl<'a> Address<'a> {
    /// Checks `bytes` and wraps them.
    #[inline]
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, Error> {
        check_address(bytes)?;
        Ok(Address(bytes))
    }

    /// Wraps bytes already checked by [`check_address`] (for instance by a packet view).
    #[inline]
    pub(crate) fn new_unchecked(bytes: &'a [u8]) -> Self {
        debug_assert!(check_address(bytes).is_ok());
        Address(bytes)
    }

    /// The address bytes (ASCII).
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The address as text; it is ASCII by construction.
    pub fn as_str(&self) -> &'a str {
        core::str::from_utf8(self.0).unwrap_or_default()
    }

    /// The scheme: the first segment (`g`, `test`, `peer`, …).
    #[inline]
    pub fn scheme(&self) -> &'a [u8] {
        self.segments().next().unwrap_or_default()
    }

    /// The dot-separated segments, scheme first.
    #[inline]
    pub fn segments(&self) -> Segments<'a> {
        Segments { rest: Some(self.0) }
    }

    /// True when `prefix` is this address or one of its ancestors on a segment boundary:
    /// `g.alice` is a prefix of `g.alice.x` but not of `g.alicebob`.
    #[inline]
    pub fn has_prefix(&self, prefix: &[u8]) -> bool {
        self.0.starts_with(prefix) && (self.0.len() == prefix.len() || self.0[prefix.len()] == b'.')
    }
}

impl fmt::Debug for Address<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.as_str())
    }
}

impl fmt::Display for Address<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Iterator over the segments of an [`Address`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match rest.iter().position(|&b| b == b'.') {
            Some(dot) => {
                self.rest = Some(&rest[dot + 1..]);
                Some(&rest[..dot])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn valid_addresses() {
        for a in [
            "g.a",
            "g.alice",
            "test.connie.alice",
            "test1.x",
            "test3.x",
            "private.a-b_c~d.E9",
            "example.alice",
            "peer.config",
            "self.x",
            "local.cluster.node",
        ] {
            assert_eq!(check_address(a.as_bytes()), Ok(()), "{a}");
        }
        let mut long = b"g.".to_vec();
        long.resize(ADDRESS_LEN_MAX, b'a');
        assert_eq!(check_address(&long), Ok(()));
    }

    #[test]
    fn invalid_addresses() {
        for a in [
            "",
            "g",
            "g.",
            "g.alice.",
            "g..alice",
            ".g.alice",
            "foo.bar",
            "G.alice",
            "test4.alice",
            "g.alice bob",
            "g.alice/bob",
            "g.alice@bob",
            "Test.a",
            "gg.a",
            "private",
            "example.",
        ] {
            assert_eq!(
                check_address(a.as_bytes()),
                Err(Error::InvalidAddress),
                "{a:?}"
            );
        }
        assert_eq!(check_address(b"g.\xe4"), Err(Error::InvalidAddress));
        let mut long = b"g.".to_vec();
        long.resize(ADDRESS_LEN_MAX + 1, b'a');
        assert_eq!(check_address(&long), Err(Error::InvalidAddress));
    }

    #[test]
    fn segments_and_prefix() {
        let a = Address::new_checked(b"g.alice.wallet").unwrap();
        let segs: Vec<&[u8]> = a.segments().collect();
        assert_eq!(segs, [&b"g"[..], b"alice", b"wallet"]);
        assert_eq!(a.scheme(), b"g");
        assert!(a.has_prefix(b"g.alice"));
        assert!(a.has_prefix(b"g.alice.wallet"));
        assert!(!a.has_prefix(b"g.ali"));
        let b = Address::new_checked(b"g.alicebob").unwrap();
        assert!(!b.has_prefix(b"g.alice"));
    }
}
