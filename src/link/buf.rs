//! The byte plumbing every connection shares, router and `ilp-loadgen` alike: one read buffer
//! with compaction ([`ReadBuf`]), one loop that reads until a head parses
//! ([`ReadBuf::read_head`]), and one frame writer with one masking RNG ([`write_binary_frame`],
//! [`write_control_frame`], [`MaskRng`]).
//!
//! # Contract
//!
//! - [`ReadBuf`] is a fixed-capacity buffer, allocated once per connection. Reads land in
//!   [`spare_mut`](ReadBuf::spare_mut) and are counted with [`advance`](ReadBuf::advance);
//!   parsers see [`data`](ReadBuf::data) (the unread bytes) and say what they used with
//!   [`consume`](ReadBuf::consume). Unread bytes move to the front only when the room left is
//!   less than what the next message needs ([`compact_if_needed`](ReadBuf::compact_if_needed)):
//!   one copy of a partial message, never one per message. Consuming everything rewinds to
//!   the front for free.
//! - [`ReadBuf::read_head`] is the one async read loop before framing starts (the WebSocket
//!   handshake, both roles). It is generic over `futures_lite::AsyncRead`, so it runs on
//!   glommio sockets and in tests alike; it reads no clock (the caller puts a timeout around
//!   it) and never reads past `len_max` bytes.
//! - The frame writers append a whole WebSocket frame to a `Vec<u8>` queue: header, payload
//!   parts in order, masked in place with a fresh key when the sender dialled (RFC 6455 §5.3).
//!
//! # Non-goals
//!
//! No growth (a full buffer is the protocol's limit, enforced by its parser), no sockets of its
//! own, no unpredictable masks (see [`MaskRng`]).

use std::io;

use futures_lite::io::{AsyncRead, AsyncReadExt};

use super::websocket::{
    apply_mask, write_frame, write_frame_header, Opcode, CONTROL_PAYLOAD_LEN_MAX,
    FRAME_HEADER_LEN_MAX,
};

/// A read buffer of fixed capacity: unread bytes at `start..end`, room for reads after `end`.
#[derive(Debug)]
pub struct ReadBuf {
    bytes: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    /// An empty buffer of `capacity` bytes, allocated (zeroed) now.
    pub fn new(capacity: usize) -> Self {
        Self {
            bytes: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The most bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes read and not yet consumed.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// No unread bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The unread bytes.
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// The unread bytes, mutable (frames are unmasked and packets rewritten in place).
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.end]
    }

    /// Bytes of room after the unread bytes.
    pub fn spare_len(&self) -> usize {
        self.bytes.len() - self.end
    }

    /// The room after the unread bytes, where the next read goes.
    pub fn spare_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.end..]
    }

    /// Counts `n` bytes a read put at the front of [`spare_mut`](Self::spare_mut).
    ///
    /// # Panics
    ///
    /// If `n` is more than the room there was.
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.spare_len(), "advance past capacity");
        self.end += n;
    }

    /// Drops `n` bytes from the front of the unread bytes; with none left, the buffer rewinds
    /// to its start.
    ///
    /// # Panics
    ///
    /// If `n` is more than the unread bytes.
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.len(), "consume past the unread bytes");
        self.start += n;
        if self.start == self.end {
            self.clear();
        }
    }

    /// Drops every unread byte.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Moves the unread bytes to the front (a no-op when they are there already).
    pub fn compact(&mut self) {
        if self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Moves the unread bytes to the front if fewer than `hint` bytes of room are left after
    /// them: `hint` is what the next read must be able to take, e.g. the rest of a partial
    /// frame ([`super::websocket::frame_len_hint`]) or one whole request.
    pub fn compact_if_needed(&mut self, hint: usize) {
        if self.spare_len() < hint {
            self.compact();
        }
    }

    /// One read from `reader` into the room left; returns what it read (0: the peer closed, or
    /// there was no room).
    pub async fn read_from<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> io::Result<usize> {
        let n = reader.read(self.spare_mut()).await?;
        self.advance(n);
        Ok(n)
    }

    /// Reads until `parse` accepts the unread bytes (a complete head: the WebSocket upgrade
    /// request or response) or refuses them, never holding more than `len_max` unread bytes.
    /// What `parse` returns must not borrow the buffer; the caller then
    /// [`consume`](Self::consume)s the head, and any bytes after it (the first frames) stay.
    ///
    /// `parse` should refuse a head longer than `len_max` itself (then `len_max` bytes that
    /// hold no head get its answer); [`HeadReadError::Full`] is the backstop if it does not.
    pub async fn read_head<R, T, E>(
        &mut self,
        reader: &mut R,
        len_max: usize,
        mut parse: impl FnMut(&[u8]) -> Result<Option<T>, E>,
    ) -> Result<T, HeadReadError<E>>
    where
        R: AsyncRead + Unpin,
    {
        let len_max = len_max.min(self.capacity());
        self.compact();
        loop {
            if self.len() >= len_max {
                return Err(HeadReadError::Full);
            }
            let room = len_max - self.len();
            let n = reader
                .read(&mut self.spare_mut()[..room])
                .await
                .map_err(HeadReadError::Io)?;
            if n == 0 {
                return Err(HeadReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before the head was complete",
                )));
            }
            self.advance(n);
            match parse(self.data()) {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {}
                Err(e) => return Err(HeadReadError::Refused(e)),
            }
        }
    }
}

/// Why [`ReadBuf::read_head`] ended without a head.
#[derive(Debug)]
pub enum HeadReadError<E> {
    /// The socket failed, or closed first.
    Io(io::Error),
    /// The parser refused the bytes.
    Refused(E),
    /// `len_max` bytes arrived and the parser still asked for more.
    Full,
}

/// Masking keys for the frames a WebSocket client sends (RFC 6455 §5.3): xorshift64*, seeded
/// per link. The RFC wants keys a third party cannot predict, which matters for browsers
/// behind proxies, not for router-to-router links or a load generator.
#[derive(Debug, Clone)]
pub struct MaskRng(u64);

impl MaskRng {
    /// A generator from `seed` (any value: the state is made non-zero).
    pub const fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next 4-byte masking key.
    pub fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        // The high half of the product: its best bits.
        ((x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32).to_le_bytes()
    }
}

/// Appends one unfragmented binary frame to `out`: the header, then `parts` in order as its
/// payload, masked in place with a fresh key from `mask` when one is given (we dialled).
/// Returns the bytes appended.
pub fn write_binary_frame(out: &mut Vec<u8>, parts: &[&[u8]], mask: Option<&mut MaskRng>) -> usize {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mask = mask.map(MaskRng::next_mask);
    let mut header = [0u8; FRAME_HEADER_LEN_MAX];
    let header_len = write_frame_header(Opcode::Binary, true, len, mask, &mut header);
    out.extend_from_slice(&header[..header_len]);
    let start = out.len();
    for part in parts {
        out.extend_from_slice(part);
    }
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask, 0);
    }
    header_len + len
}

/// Appends one control frame (close, ping, pong) to `out`, masked like
/// [`write_binary_frame`]. Returns the bytes appended.
///
/// # Panics
///
/// If `opcode` is not a control opcode or `payload` is over
/// [`CONTROL_PAYLOAD_LEN_MAX`] bytes.
pub fn write_control_frame(
    out: &mut Vec<u8>,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<&mut MaskRng>,
) -> usize {
    assert!(opcode.is_control(), "not a control opcode: {opcode:?}");
    let mut frame = [0u8; FRAME_HEADER_LEN_MAX + CONTROL_PAYLOAD_LEN_MAX];
    let n = write_frame(
        opcode,
        true,
        payload,
        mask.map(MaskRng::next_mask),
        &mut frame,
    );
    out.extend_from_slice(&frame[..n]);
    n
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::link::websocket::{FrameDecoder, Message, MessageAssembler, Role};

    #[test]
    fn consume_rewinds_and_compaction_waits_for_need() {
        let mut buf = ReadBuf::new(16);
        buf.spare_mut()[..10].copy_from_slice(b"0123456789");
        buf.advance(10);
        buf.consume(4);
        assert_eq!(buf.data(), b"456789");
        assert_eq!(buf.spare_mut().len(), 6);
        // Six bytes of room are enough for a hint of 6: nothing moves.
        buf.compact_if_needed(6);
        assert_eq!(buf.spare_mut().len(), 6);
        buf.compact_if_needed(7);
        assert_eq!(buf.data(), b"456789");
        assert_eq!(buf.spare_mut().len(), 10);
        buf.data_mut()[0] = b'x';
        buf.consume(6);
        assert!(buf.is_empty());
        assert_eq!(buf.spare_mut().len(), 16, "consuming everything rewinds");
        assert_eq!(buf.capacity(), 16);
    }

    #[test]
    fn read_head_stops_at_the_head_and_keeps_what_follows() {
        let stream = b"HEAD\r\n\r\nframes";
        // A reader that hands out 3 bytes at a time.
        let mut reader = futures_lite::io::Cursor::new(&stream[..]);
        let mut chunked = Chunked(&mut reader, 3);
        let mut buf = ReadBuf::new(64);
        let parse = |b: &[u8]| -> Result<Option<usize>, ()> {
            Ok(b.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4))
        };
        let len = futures_lite::future::block_on(buf.read_head(&mut chunked, 32, parse)).unwrap();
        assert_eq!(len, 8);
        buf.consume(len);
        assert_eq!(buf.data(), b"f", "the read that finished the head");

        // Never more than len_max bytes, and a parser that never finishes gets Full.
        let mut reader = futures_lite::io::Cursor::new(&[b'a'; 100][..]);
        let mut buf = ReadBuf::new(64);
        let never = |_: &[u8]| -> Result<Option<()>, ()> { Ok(None) };
        let end = futures_lite::future::block_on(buf.read_head(&mut reader, 10, never));
        assert!(matches!(end, Err(HeadReadError::Full)));
        assert_eq!(buf.len(), 10);

        let mut reader = futures_lite::io::Cursor::new(&b"abc"[..]);
        let mut buf = ReadBuf::new(64);
        let refuse = |b: &[u8]| {
            if b.len() >= 2 {
                Err(b.len())
            } else {
                Ok(None::<()>)
            }
        };
        let end = futures_lite::future::block_on(buf.read_head(&mut reader, 10, refuse));
        assert!(matches!(end, Err(HeadReadError::Refused(3))));
        let end = futures_lite::future::block_on(buf.read_head(&mut reader, 10, never));
        assert!(
            matches!(end, Err(HeadReadError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof)
        );
    }

    /// Hands out at most `.1` bytes per read.
    struct Chunked<'a, R>(&'a mut R, usize);

    impl<R: AsyncRead + Unpin> AsyncRead for Chunked<'_, R> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.1);
            std::pin::Pin::new(&mut *self.0).poll_read(cx, &mut buf[..n])
        }
    }

    #[test]
    fn mask_rng_matches_xorshift64_star_and_is_never_stuck() {
        // The reference: xorshift64* (Vigna), high 32 bits of the product.
        let mut state = 0x1234_5678_9abc_def1_u64;
        let mut rng = MaskRng::new(state);
        for _ in 0..100 {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let want = ((state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32).to_le_bytes();
            assert_eq!(rng.next_mask(), want);
        }
        let mut zero = MaskRng::new(0);
        assert_ne!(zero.next_mask(), zero.next_mask());
    }

    #[test]
    fn frames_written_decode_to_their_parts() {
        for masked in [false, true] {
            let mut rng = MaskRng::new(7);
            let mut out = b"queued".to_vec();
            let big = vec![0xab; 70_000];
            let n = write_binary_frame(
                &mut out,
                &[b"head", &big, b"tail"],
                masked.then_some(&mut rng),
            );
            assert_eq!(out.len(), 6 + n);
            let n = write_control_frame(&mut out, Opcode::Ping, b"p", masked.then_some(&mut rng));
            assert_eq!(n, 2 + 1 + if masked { 4 } else { 0 });

            let role = if masked { Role::Server } else { Role::Client };
            let decoder = FrameDecoder::new(role, 1 << 20);
            let mut assembler = MessageAssembler::new(1 << 20);
            let mut wire = out[6..].to_vec();
            let frame = decoder.decode(&mut wire).unwrap().unwrap();
            let len = frame.len;
            match assembler.handle_frame(&mut wire, &frame).unwrap() {
                Message::Binary(bytes) => {
                    assert_eq!(bytes, &[&b"head"[..], &big, b"tail"].concat()[..])
                }
                other => panic!("{other:?}"),
            }
            let frame = decoder.decode(&mut wire[len..]).unwrap().unwrap();
            assert_eq!(frame.opcode, Opcode::Ping);
            assert_eq!(&wire[len..][frame.payload], b"p");
        }
    }
}
