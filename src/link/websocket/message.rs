//! RFC 6455 messages: [`MessageAssembler`] turns decoded frames into [`Message`]s, zero-copy
//! for an unfragmented binary frame, reassembling fragments into a buffer allocated once.

use super::frame::{Frame, Opcode, WsError};
use super::CloseCode;

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// What a frame amounts to once [`MessageAssembler::handle_frame`] has seen it.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A complete binary message: a slice of the read buffer if it came in one frame, of the
    /// assembler if it was fragmented. Valid until the next call.
    Binary(&'a mut [u8]),
    /// A complete text message, content discarded. BTP ignores these (interledger-rs logs
    /// "not binary"); a link may instead close with [`CloseCode::UNSUPPORTED_DATA`].
    Text,
    /// A fragment was taken in; no message is complete yet.
    Fragment,
    /// A ping: answer with [`write_pong`](super::write_pong) and this payload (RFC 6455 §5.5.3).
    Ping(&'a [u8]),
    /// A pong: nothing to do (it may refresh a liveness timer).
    Pong(&'a [u8]),
    /// The peer is closing: answer with [`write_close`](super::write_close) (with
    /// [`Close::reply_code`]) unless we sent a close first, then stop reading and shut the
    /// connection down.
    Close(Close<'a>),
}

/// The payload of a close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close<'a> {
    /// The status code; `None` for an empty close payload.
    pub code: Option<CloseCode>,
    /// The reason, as sent (not checked for UTF-8).
    pub reason: &'a [u8],
}

impl Close<'_> {
    /// The code to echo in our reply: theirs, or 1000 if they sent none.
    pub fn reply_code(&self) -> CloseCode {
        self.code.unwrap_or(CloseCode::NORMAL)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assembly {
    Idle,
    Binary,
    Text,
}

/// Turns frames into messages for one connection: reassembles fragmented binary messages into a
/// buffer of fixed capacity allocated once, tracks fragmented text messages (without keeping
/// them), and passes control frames through, also in the middle of a fragmented message.
#[derive(Debug)]
pub struct MessageAssembler {
    buf: Box<[u8]>,
    /// Bytes of the message in progress (counted but not kept for text).
    len: usize,
    state: Assembly,
}

impl MessageAssembler {
    /// An assembler refusing messages over `message_len_max` bytes; allocates that much once.
    pub fn new(message_len_max: usize) -> Self {
        Self {
            buf: vec![0; message_len_max].into_boxed_slice(),
            len: 0,
            state: Assembly::Idle,
        }
    }

    /// The largest message accepted.
    pub fn message_len_max(&self) -> usize {
        self.buf.len()
    }

    /// Is a fragmented message in progress?
    pub fn is_fragmented(&self) -> bool {
        self.state != Assembly::Idle
    }

    /// Drops any message in progress, for reuse on a new connection.
    pub fn reset(&mut self) {
        self.len = 0;
        self.state = Assembly::Idle;
    }

    /// Takes the frame `decode` just returned, with the same buffer it was decoded from.
    ///
    /// An error fails the connection (send a close with [`WsError::close_code`]); the assembler
    /// is left idle.
    ///
    /// # Panics
    ///
    /// If `frame.payload` is out of `input`'s bounds, i.e. `input` is not the buffer the frame
    /// was decoded from.
    pub fn handle_frame<'a>(
        &'a mut self,
        input: &'a mut [u8],
        frame: &Frame,
    ) -> Result<Message<'a>, WsError> {
        let payload = &mut input[frame.payload.clone()];
        match frame.opcode {
            Opcode::Ping => Ok(Message::Ping(payload)),
            Opcode::Pong => Ok(Message::Pong(payload)),
            Opcode::Close => match parse_close(payload) {
                Ok(close) => Ok(Message::Close(close)),
                Err(e) => {
                    // An error leaves the assembler idle, a message in progress included.
                    self.reset();
                    Err(e)
                }
            },
            Opcode::Binary | Opcode::Text => self.start(frame.opcode, frame.fin, payload),
            Opcode::Continuation => self.continue_(frame.fin, payload),
        }
    }

    fn start<'a>(
        &'a mut self,
        opcode: Opcode,
        fin: bool,
        payload: &'a mut [u8],
    ) -> Result<Message<'a>, WsError> {
        if self.state != Assembly::Idle {
            self.reset();
            return Err(WsError::ExpectedContinuation);
        }
        if payload.len() > self.buf.len() {
            return Err(WsError::MessageTooLong);
        }
        let binary = opcode == Opcode::Binary;
        if fin {
            // Unfragmented: zero-copy.
            return Ok(if binary {
                Message::Binary(payload)
            } else {
                Message::Text
            });
        }
        if binary {
            self.buf[..payload.len()].copy_from_slice(payload);
            self.state = Assembly::Binary;
        } else {
            self.state = Assembly::Text;
        }
        self.len = payload.len();
        Ok(Message::Fragment)
    }

    fn continue_(&mut self, fin: bool, payload: &[u8]) -> Result<Message<'_>, WsError> {
        if self.state == Assembly::Idle {
            return Err(WsError::UnexpectedContinuation);
        }
        let end = self.len + payload.len();
        if end > self.buf.len() {
            self.reset();
            return Err(WsError::MessageTooLong);
        }
        if self.state == Assembly::Binary {
            self.buf[self.len..end].copy_from_slice(payload);
        }
        self.len = end;
        if !fin {
            return Ok(Message::Fragment);
        }
        let state = self.state;
        self.reset();
        Ok(match state {
            Assembly::Binary => Message::Binary(&mut self.buf[..end]),
            _ => Message::Text,
        })
    }
}

fn parse_close(payload: &[u8]) -> Result<Close<'_>, WsError> {
    match *payload {
        [] => Ok(Close {
            code: None,
            reason: &[],
        }),
        [_] => Err(WsError::InvalidClosePayload),
        [hi, lo, ref reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([hi, lo]));
            if !code.is_sendable() {
                return Err(WsError::InvalidCloseCode(code.0));
            }
            Ok(Close {
                code: Some(code),
                reason,
            })
        }
    }
}

#[cfg(test)]
mod test {
    use super::super::test_support::*;
    use super::super::*;

    // ---- messages -------------------------------------------------------------------------

    #[test]
    fn unfragmented_binary_is_zero_copy() {
        let mut buf = frame_bytes(Opcode::Binary, true, b"packet", None);
        let frame = client().decode(&mut buf).unwrap().unwrap();
        let mut assembler = MessageAssembler::new(64);
        let base = buf.as_ptr() as usize;
        let Message::Binary(bytes) = assembler.handle_frame(&mut buf, &frame).unwrap() else {
            panic!("not binary");
        };
        assert_eq!(bytes.as_ptr() as usize, base + 2);
        bytes[0] = b'P'; // the engine may rewrite in place
        assert_eq!(&buf[2..], b"Packet");
    }

    #[test]
    fn control_frames_inside_fragmented_message() {
        let mut stream = frame_bytes(Opcode::Binary, false, b"ab", None);
        stream.extend(frame_bytes(Opcode::Ping, true, b"p", None));
        stream.extend(frame_bytes(Opcode::Continuation, false, b"cd", None));
        stream.extend(frame_bytes(Opcode::Pong, true, b"", None));
        stream.extend(frame_bytes(Opcode::Continuation, true, b"e", None));
        stream.extend(frame_bytes(
            Opcode::Close,
            true,
            &[0x03, 0xe8, b'o', b'k'],
            None,
        ));
        assert_eq!(
            decode_all(Role::Client, &stream).unwrap(),
            [
                Event::Ping(b"p".to_vec()),
                Event::Pong(Vec::new()),
                Event::Binary(b"abcde".to_vec()),
                Event::Close(Some(1000), b"ok".to_vec()),
            ]
        );
    }

    /// Found by the `ws_frame` fuzz target: a refused close frame in the middle of a
    /// fragmented message left the message in progress (input `01 00 88 01 ff`).
    #[test]
    fn a_refused_close_inside_a_fragmented_message_leaves_the_assembler_idle() {
        let mut assembler = MessageAssembler::new(1024);
        let decoder = FrameDecoder::new(Role::Client, 1024);
        let mut input = [0x01, 0x00, 0x88, 0x01, 0xff];
        let first = decoder.decode(&mut input).unwrap().unwrap();
        assert!(assembler.handle_frame(&mut input, &first).is_ok());
        assert!(assembler.is_fragmented());
        let mut rest = [0x88, 0x01, 0xff];
        let close = decoder.decode(&mut rest).unwrap().unwrap();
        assert_eq!(
            assembler.handle_frame(&mut rest, &close).err(),
            Some(WsError::InvalidClosePayload)
        );
        assert!(!assembler.is_fragmented());
    }

    #[test]
    fn fragmentation_violations() {
        let cont = frame_bytes(Opcode::Continuation, true, b"x", None);
        assert_eq!(
            decode_all(Role::Client, &cont),
            Err(WsError::UnexpectedContinuation)
        );

        let mut stream = frame_bytes(Opcode::Binary, false, b"x", None);
        stream.extend(frame_bytes(Opcode::Binary, true, b"y", None));
        assert_eq!(
            decode_all(Role::Client, &stream),
            Err(WsError::ExpectedContinuation)
        );

        let mut stream = frame_bytes(Opcode::Text, false, b"x", None);
        stream.extend(frame_bytes(Opcode::Binary, true, b"y", None));
        assert_eq!(
            decode_all(Role::Client, &stream),
            Err(WsError::ExpectedContinuation)
        );
        assert_eq!(
            WsError::ExpectedContinuation.close_code(),
            CloseCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn oversize_messages() {
        let decoder = client();
        let mut assembler = MessageAssembler::new(4);
        assert_eq!(assembler.message_len_max(), 4);
        let mut events = Vec::new();

        let mut buf = frame_bytes(Opcode::Binary, true, b"12345", None);
        let result = drain(&decoder, &mut assembler, &mut buf, &mut events);
        assert_eq!(result, Err(WsError::MessageTooLong));
        assert_eq!(
            WsError::MessageTooLong.close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );

        let mut buf = frame_bytes(Opcode::Binary, true, b"1234", None);
        assert_eq!(
            drain(&decoder, &mut assembler, &mut buf, &mut events),
            Ok(1)
        );
        assert_eq!(events, [Event::Binary(b"1234".to_vec())]);

        let mut buf = frame_bytes(Opcode::Binary, false, b"123", None);
        buf.extend(frame_bytes(Opcode::Continuation, true, b"45", None));
        let result = drain(&decoder, &mut assembler, &mut buf, &mut events);
        assert_eq!(result, Err(WsError::MessageTooLong));
        assert!(
            !assembler.is_fragmented(),
            "an error leaves the assembler idle"
        );

        // Text counts too, though it is not kept.
        let mut buf = frame_bytes(Opcode::Text, false, b"123", None);
        buf.extend(frame_bytes(Opcode::Continuation, true, b"45", None));
        let result = drain(&decoder, &mut assembler, &mut buf, &mut events);
        assert_eq!(result, Err(WsError::MessageTooLong));
    }

    #[test]
    fn close_payloads() {
        let close = |payload: &[u8]| {
            decode_all(
                Role::Client,
                &frame_bytes(Opcode::Close, true, payload, None),
            )
        };
        assert_eq!(close(b""), Ok(vec![Event::Close(None, Vec::new())]));
        assert_eq!(close(&[0x03]), Err(WsError::InvalidClosePayload));
        assert_eq!(close(&[0x03, 0xed]), Err(WsError::InvalidCloseCode(1005)));
        assert_eq!(close(&[0x03, 0xee]), Err(WsError::InvalidCloseCode(1006)));
        assert_eq!(close(&[0x03, 0xe7]), Err(WsError::InvalidCloseCode(999)));
        assert_eq!(close(&[0x13, 0x88]), Err(WsError::InvalidCloseCode(5000)));
        assert_eq!(
            close(&[0x0f, 0xa0]),
            Ok(vec![Event::Close(Some(4000), Vec::new())])
        );

        let empty = Close {
            code: None,
            reason: &[],
        };
        assert_eq!(empty.reply_code(), CloseCode::NORMAL);

        let reason = [b'r'; CLOSE_REASON_LEN_MAX];
        let mut out = [0; 2 + 4 + CONTROL_PAYLOAD_LEN_MAX];
        let len = write_close(
            CloseCode::MESSAGE_TOO_BIG,
            &reason,
            Some([9, 8, 7, 6]),
            &mut out,
        );
        assert_eq!(len, out.len());
        assert_eq!(
            decode_all(Role::Server, &out).unwrap(),
            [Event::Close(Some(1009), reason.to_vec())]
        );
    }

    // ---- streams --------------------------------------------------------------------------

    /// A client-encoded stream of every kind of frame, and the events it should give.
    fn mixed_stream(rng: &mut Rng) -> (Vec<u8>, Vec<Event>) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        let mut push = |opcode, fin, payload: &[u8], rng: &mut Rng| {
            stream.extend(frame_bytes(opcode, fin, payload, Some(rng.mask())));
        };
        push(Opcode::Ping, true, b"", rng);
        expected.push(Event::Ping(Vec::new()));
        push(Opcode::Binary, true, b"one", rng);
        expected.push(Event::Binary(b"one".to_vec()));
        push(Opcode::Binary, false, b"tw", rng);
        push(Opcode::Ping, true, b"keepalive", rng);
        expected.push(Event::Ping(b"keepalive".to_vec()));
        push(Opcode::Continuation, false, b"", rng);
        push(Opcode::Continuation, true, b"o", rng);
        expected.push(Event::Binary(b"two".to_vec()));
        push(Opcode::Text, false, b"not", rng);
        push(Opcode::Continuation, true, b" btp", rng);
        expected.push(Event::Text);
        let medium = rng.bytes(300);
        push(Opcode::Binary, true, &medium, rng);
        expected.push(Event::Binary(medium));
        push(Opcode::Binary, true, b"", rng);
        expected.push(Event::Binary(Vec::new()));
        let large = rng.bytes(70_000);
        push(Opcode::Binary, false, &large[..40_000], rng);
        push(Opcode::Continuation, true, &large[40_000..], rng);
        expected.push(Event::Binary(large));
        push(Opcode::Pong, true, b"pong", rng);
        expected.push(Event::Pong(b"pong".to_vec()));
        push(Opcode::Close, true, &[0x03, 0xe9, b'b', b'y', b'e'], rng);
        expected.push(Event::Close(Some(1001), b"bye".to_vec()));
        (stream, expected)
    }

    #[test]
    fn byte_by_byte_matches_all_at_once() {
        let mut rng = Rng(0x5eed_0002);
        let (stream, expected) = mixed_stream(&mut rng);
        assert_eq!(decode_all(Role::Server, &stream).unwrap(), expected);

        let decoder = FrameDecoder::new(Role::Server, 1 << 20);
        let mut assembler = MessageAssembler::new(1 << 20);
        let mut buf = Vec::new();
        let mut events = Vec::new();
        let mut frames = 0;
        for &byte in &stream {
            buf.push(byte);
            frames += drain(&decoder, &mut assembler, &mut buf, &mut events).unwrap();
        }
        assert!(buf.is_empty());
        assert_eq!(frames, 14);
        assert_eq!(events, expected);

        // Random read sizes too.
        let mut buf = Vec::new();
        let mut events = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let end = (at + 1 + rng.below(3000)).min(stream.len());
            buf.extend_from_slice(&stream[at..end]);
            at = end;
            drain(&decoder, &mut assembler, &mut buf, &mut events).unwrap();
        }
        assert_eq!(events, expected);
    }

    #[test]
    fn client_to_server_round_trip() {
        let mut rng = Rng(0x5eed_0003);
        let decoder = FrameDecoder::new(Role::Server, 80_000);
        let mut assembler = MessageAssembler::new(80_000);
        let mut wire = vec![0; FRAME_HEADER_LEN_MAX + 70_000];
        for len in (0..=300).chain([70_000]) {
            let payload = rng.bytes(len);
            let mask = rng.mask();
            // The hot-path way: header, payload placed after it, then masked in place.
            let header_len = write_frame_header(Opcode::Binary, true, len, Some(mask), &mut wire);
            assert_eq!(header_len, frame_header_len(len, true));
            wire[header_len..header_len + len].copy_from_slice(&payload);
            apply_mask(&mut wire[header_len..header_len + len], mask, 0);
            let frame_len = header_len + len;

            let frame = decoder.decode(&mut wire[..frame_len]).unwrap().unwrap();
            assert_eq!(frame.len, frame_len);
            assert_eq!(frame.payload, header_len..frame_len);
            match assembler
                .handle_frame(&mut wire[..frame_len], &frame)
                .unwrap()
            {
                Message::Binary(bytes) => assert_eq!(bytes, &payload[..], "len {len}"),
                other => panic!("{other:?}"),
            }

            // And fragmented at random points.
            let mut stream = Vec::new();
            let mut at = 0;
            let mut opcode = Opcode::Binary;
            loop {
                let end = (at + rng.below(len / 3 + 2)).min(len);
                stream.extend(frame_bytes(
                    opcode,
                    end == len,
                    &payload[at..end],
                    Some(rng.mask()),
                ));
                opcode = Opcode::Continuation;
                at = end;
                if at == len {
                    break;
                }
            }
            let mut events = Vec::new();
            drain(&decoder, &mut assembler, &mut stream, &mut events).unwrap();
            assert!(stream.is_empty());
            assert_eq!(events, [Event::Binary(payload)], "len {len}");
        }
    }
}
