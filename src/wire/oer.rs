//! OER building blocks (RFC 30) on plain slices: length determinants, var-octet-strings,
//! var-uints and fixed-width big-endian integers.
//!
//! [`Reader`] walks a slice left to right and never trusts a length before checking it against
//! what remains; it returns positions, so views can keep offsets instead of borrowed slices.
//! [`Writer`] emits into a caller-supplied slice; running past its end is a caller bug (the
//! callers size their buffers with the `*_len` functions here) and panics.

use super::Error;
use core::ops::Range;

/// The longest length determinant we emit: `0x88` and 8 length bytes.
pub const LENGTH_PREFIX_LEN_MAX: usize = 9;

/// Reads left to right through `buf`, returning offsets into it.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at offset `pos` of `buf`; everything up to `buf.len()` is readable.
    #[inline]
    pub fn new(buf: &'a [u8], pos: usize) -> Self {
        debug_assert!(pos <= buf.len());
        Reader { buf, pos }
    }

    /// The offset of the next unread byte.
    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The offset just past the last readable byte.
    #[inline]
    pub fn end(&self) -> usize {
        self.buf.len()
    }

    /// The readable bytes (offsets returned by this reader index into them).
    #[inline]
    pub fn into_slice(self) -> &'a [u8] {
        self.buf
    }

    /// How many bytes remain.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes `n` fixed bytes; [`Error::Truncated`] if fewer remain.
    #[inline]
    pub fn fixed(&mut self, n: usize) -> Result<Range<usize>, Error> {
        if n > self.remaining() {
            return Err(Error::Truncated);
        }
        let start = self.pos;
        self.pos += n;
        Ok(start..self.pos)
    }

    /// Takes one byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, Error> {
        let range = self.fixed(1)?;
        Ok(self.buf[range.start])
    }

    /// Takes a big-endian UInt64.
    #[inline]
    pub fn u64(&mut self) -> Result<u64, Error> {
        let range = self.fixed(8)?;
        Ok(read_u64(self.buf, range.start))
    }

    /// Takes a length determinant and returns its value. Canonical forms only
    /// (RFC 30 "Length determinant": the short form up to 127, no leading zero byte in the
    /// long form). The value is not yet checked against what remains.
    #[inline]
    pub fn length(&mut self) -> Result<u64, Error> {
        let first = self.u8()?;
        if first < 0x80 {
            return Ok(u64::from(first));
        }
        let count = usize::from(first & 0x7f);
        if count == 0 {
            return Err(Error::IndefiniteLength);
        }
        if count > 8 {
            return Err(Error::LengthTooLarge);
        }
        let range = self.fixed(count)?;
        let bytes = &self.buf[range];
        if bytes[0] == 0 {
            return Err(Error::NonCanonicalLength);
        }
        let value = bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        if value < 0x80 {
            return Err(Error::NonCanonicalLength);
        }
        Ok(value)
    }

    /// Takes a var-octet-string and returns the range of its content.
    #[inline]
    pub fn var_octets(&mut self) -> Result<Range<usize>, Error> {
        let len = self.length()?;
        self.take_declared(len)
    }

    /// Takes a var-octet-string of at most `len_max` bytes; a longer declared length is
    /// `too_long`, checked before the length is compared with what remains.
    #[inline]
    pub fn var_octets_max(
        &mut self,
        len_max: usize,
        too_long: Error,
    ) -> Result<Range<usize>, Error> {
        let len = self.length()?;
        if len > len_max as u64 {
            return Err(too_long);
        }
        self.take_declared(len)
    }

    /// Takes a var-uint: a length L of 1…8, then an L-byte big-endian integer. A redundant
    /// leading zero is accepted (RFC 30 parsers may), but never emitted by [`Writer::var_uint`].
    #[inline]
    pub fn var_uint(&mut self) -> Result<u64, Error> {
        let len = self.length()?;
        if len == 0 || len > 8 {
            return Err(Error::InvalidVarUint);
        }
        let range = self.take_declared(len)?;
        Ok(self.buf[range]
            .iter()
            .fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
    }

    /// A reader over the next `len` bytes only, for a field that encloses others; `self`
    /// moves past them.
    #[inline]
    pub fn enclosed(&mut self, len: u64) -> Result<Reader<'a>, Error> {
        let range = self.take_declared(len)?;
        Ok(Reader {
            buf: &self.buf[..range.end],
            pos: range.start,
        })
    }

    #[inline]
    fn take_declared(&mut self, len: u64) -> Result<Range<usize>, Error> {
        if len > self.remaining() as u64 {
            return Err(Error::LengthOverflow);
        }
        // Cannot truncate: len ≤ remaining ≤ usize::MAX.
        let len = len as usize;
        let start = self.pos;
        self.pos += len;
        Ok(start..self.pos)
    }
}

/// Reads a big-endian UInt64 at `at`. The caller has checked the bounds.
#[inline]
pub fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(bytes)
}

/// Bytes taken by the length determinant of `len`.
#[inline]
pub const fn length_prefix_len(len: usize) -> usize {
    if len < 0x80 {
        1
    } else {
        1 + uint_len(len as u64)
    }
}

/// Bytes taken by a var-octet-string with `len` bytes of content.
#[inline]
pub const fn var_octets_len(len: usize) -> usize {
    length_prefix_len(len) + len
}

/// Bytes taken by the var-uint `value` in its canonical (shortest) form.
#[inline]
pub const fn var_uint_len(value: u64) -> usize {
    1 + uint_len(value)
}

/// Bytes needed for `value` big-endian without leading zeros; at least 1.
#[inline]
const fn uint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    if bits == 0 {
        1
    } else {
        bits.div_ceil(8)
    }
}

/// Emits into a caller-supplied slice, left to right.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    ///
    /// # Panics
    /// Every method panics if `buf` is too short: callers size it first.
    #[inline]
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    /// Bytes written so far.
    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Writes raw bytes.
    #[inline]
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }

    /// Writes one byte.
    #[inline]
    pub fn u8(&mut self, value: u8) {
        self.bytes(&[value]);
    }

    /// Writes a big-endian UInt32.
    #[inline]
    pub fn u32(&mut self, value: u32) {
        self.bytes(&value.to_be_bytes());
    }

    /// Writes a big-endian UInt64.
    #[inline]
    pub fn u64(&mut self, value: u64) {
        self.bytes(&value.to_be_bytes());
    }

    /// Writes a canonical length determinant.
    #[inline]
    pub fn length(&mut self, len: usize) {
        if len < 0x80 {
            self.u8(len as u8);
        } else {
            let n = uint_len(len as u64);
            self.u8(0x80 | n as u8);
            self.bytes(&(len as u64).to_be_bytes()[8 - n..]);
        }
    }

    /// Writes a var-octet-string.
    #[inline]
    pub fn var_octets(&mut self, bytes: &[u8]) {
        self.length(bytes.len());
        self.bytes(bytes);
    }

    /// Writes a canonical var-uint.
    #[inline]
    pub fn var_uint(&mut self, value: u64) {
        let n = uint_len(value);
        self.u8(n as u8);
        self.bytes(&value.to_be_bytes()[8 - n..]);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn length(bytes: &[u8]) -> Result<(u64, usize), Error> {
        let mut r = Reader::new(bytes, 0);
        r.length().map(|v| (v, r.pos()))
    }

    #[test]
    fn rfc30_length_examples() {
        assert_eq!(length(&[0x07]), Ok((7, 1)));
        assert_eq!(length(&[0x81, 0x82]), Ok((130, 2)));
        assert_eq!(length(&[0x82, 0x12, 0x34]), Ok((4660, 3)));
        assert_eq!(length(&[0x83, 0xab, 0xcd, 0xef]), Ok((11_259_375, 4)));
        assert_eq!(length(&[0x81, 0x80]), Ok((128, 2)));
        assert_eq!(length(&[0x82, 0x7f, 0xff]), Ok((32767, 3)));
    }

    #[test]
    fn length_refusals() {
        assert_eq!(length(&[]), Err(Error::Truncated));
        assert_eq!(length(&[0x80]), Err(Error::IndefiniteLength));
        assert_eq!(length(&[0x81, 0x7f]), Err(Error::NonCanonicalLength));
        assert_eq!(length(&[0x82, 0x00, 0xa2]), Err(Error::NonCanonicalLength));
        assert_eq!(
            length(&[0x89, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::LengthTooLarge)
        );
        assert_eq!(length(&[0x82, 0x01]), Err(Error::Truncated));
    }

    #[test]
    fn length_emit_matches_parse() {
        for len in [0usize, 1, 127, 128, 255, 256, 32767, 65535, 65536, 1 << 40] {
            let mut buf = [0u8; LENGTH_PREFIX_LEN_MAX];
            let mut w = Writer::new(&mut buf);
            w.length(len);
            let written = w.pos();
            assert_eq!(written, length_prefix_len(len));
            assert_eq!(length(&buf[..written]), Ok((len as u64, written)));
        }
    }

    #[test]
    fn var_octets_overflow() {
        let mut r = Reader::new(&[0x05, 1, 2], 0);
        assert_eq!(r.var_octets(), Err(Error::LengthOverflow));
        let huge = [0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0];
        assert_eq!(
            Reader::new(&huge, 0).var_octets(),
            Err(Error::LengthOverflow)
        );
    }

    #[test]
    fn var_uint_forms() {
        assert_eq!(Reader::new(&[0x01, 0x00], 0).var_uint(), Ok(0));
        assert_eq!(Reader::new(&[0x02, 0x01, 0x2c], 0).var_uint(), Ok(300));
        assert_eq!(Reader::new(&[0x02, 0x00, 0x01], 0).var_uint(), Ok(1));
        assert_eq!(
            Reader::new(&[0x00], 0).var_uint(),
            Err(Error::InvalidVarUint)
        );
        let nine = [0x09, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(Reader::new(&nine, 0).var_uint(), Err(Error::InvalidVarUint));
        for value in [0u64, 1, 255, 256, 300, u64::MAX] {
            let mut buf = [0u8; 9];
            let mut w = Writer::new(&mut buf);
            w.var_uint(value);
            let n = w.pos();
            assert_eq!(n, var_uint_len(value));
            assert_eq!(Reader::new(&buf[..n], 0).var_uint(), Ok(value));
        }
    }
}
