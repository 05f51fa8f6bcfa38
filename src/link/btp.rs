//! A sans-IO BTP 2.0 session (RFC 23) for one WebSocket connection.
//!
//! [`BtpSession`] owns no socket and reads no clock: the driver hands it each binary WebSocket
//! message with `now` (Unix milliseconds) and a buffer to answer into, and gets back what to
//! do. Nothing allocates after construction: the table of outstanding requests is sized once
//! from `in_flight_max`, and every answer the session writes itself fits in
//! [`CONTROL_LEN_MAX`] bytes.
//!
//! # Roles
//!
//! - **Server** ([`BtpSession::server`]): a peer dialled us. Its first message must be the auth
//!   Message; the driver passes it to [`handle_auth`](BtpSession::handle_auth) with the
//!   [`PeerAuth`] table and the account named by the WebSocket path, if any.
//! - **Client** ([`BtpSession::client`]): we dialled the peer. The driver sends the bytes of
//!   [`write_auth`](BtpSession::write_auth) first and passes everything it receives to
//!   [`handle_message`](BtpSession::handle_message); the Response to the auth request opens
//!   the session ([`Event::Opened`]).
//!
//! After auth the two roles are symmetric: either side sends Prepares and answers them.
//!
//! # Auth flow (RFC 23 "Authentication")
//!
//! The client sends a Message whose entries are `auth` (content type 0, empty),
//! `auth_username` (1, possibly empty) and `auth_token` (1), and waits for the Response
//! before sending ILP. The server requires that the first message is a Message, that its
//! primary (first) entry is `auth`, that it has at most [`AUTH_ENTRIES_MAX`] entries with
//! unique names, and that it has an `auth_token` entry; the peer is then found by
//! [`PeerAuth::authenticate`]. Success: a Response with the same request id and no entries
//! (`01 <id> 02 01 00`), and the session is open. Failure: a BTP Error `F00`
//! `NotAcceptedError` whose `triggeredAt` is `now` as a 19-byte GeneralizedTime and whose
//! data is `{"message":"<reason>"}`; the session is closed and the driver sends the Error,
//! then closes the socket. (An unreadable first message has no request id to answer: it gets
//! nothing, and the session closes.) No auth before the deadline: [`handle_timeout`] closes.
//!
//! # Sending (RFC 23)
//!
//! - A Prepare goes in a **Message** whose only entry is `ilp`:
//!   [`write_prepare_header`](BtpSession::write_prepare_header) takes a request id, remembers
//!   the caller's tag for it and writes the header; the ILP bytes follow it unchanged.
//! - A Fulfill or Reject goes in a **Response** with the Prepare's request id:
//!   [`write_reply_header`](BtpSession::write_reply_header).
//! - Errors, only for what is not ILP: `F00 NotAcceptedError` for a Message without an `ilp`
//!   entry and for any Transfer ([`Event::Respond`]).
//!
//! Request ids are sequential. Each one's home in the outstanding table is `id & mask`, so a
//! lookup is one index and one compare; an id whose slot is still busy is skipped. A full
//! table is [`SendError::Busy`] (the engine answers T03).
//!
//! # Receiving (RFC 23 "Flow" and "Message")
//!
//! Type-agnostic, because interledger-rs swaps Message and Response: the `ilp` entry of a
//! Message or a Response is dispatched on its ILP type byte.
//!
//! | Packet | Event |
//! | --- | --- |
//! | Fulfill/Reject (Message or Response), id is mine | [`Event::Reply`] |
//! | Prepare (Message or Response) | [`Event::Prepare`] |
//! | Message whose `ilp` is neither (empty, garbage) | [`Event::Prepare`] (the engine answers F01) |
//! | Response whose `ilp` is neither, id is mine | [`Event::Reply`] (the engine refuses it) |
//! | Response without `ilp`, id is mine | [`Event::ReplyError`] with `F00` |
//! | BTP Error, id is mine | [`Event::ReplyError`] (T00 → ILP T01, else F02) |
//! | any reply, id not mine | [`Event::Ignored`], nothing sent (RFC 23) |
//! | Message without `ilp` (a second `auth` too) | Error F00 ([`Event::Respond`]) |
//! | Transfer | Error F00 ([`Event::Respond`]) |
//! | unreadable bytes | nothing sent; [`Event::Close`] after `bad_frames_max` of them |
//!
//! Outstanding entries whose `expires_at` passed more than [`PURGE_GRACE_MS`] ago are purged
//! by [`handle_timeout`], so a peer that never answers cannot fill the table. The engine's own
//! expiry wheel is the real deadline; a tag handed back by [`Event::Reply`] may therefore name
//! a request the engine has already expired, which its slot generation detects.
//!
//! # Non-goals
//!
//! No I/O, no clock, no TLS (a terminating proxy or the driver does that), no WebSocket
//! framing (that is `link::websocket`), no settlement: Transfers are always refused, and no
//! sub-protocol other than `ilp` and `auth` is spoken.
//!
//! # Layout
//!
//! This file is the session alone, about 900 lines: one state machine whose methods all answer
//! to the decision table above, so splitting it would scatter that table's rows. Its tests are
//! in `btp/tests.rs`.
//!
//! [`handle_timeout`]: BtpSession::handle_timeout

use std::fmt;
use std::ops::Range;

use super::auth::PeerAuth;
use crate::id::PeerId;
use crate::wire::{
    emit_ilp_header, ilp_header_len, timestamp, Btp, BtpBody, BtpRepr, BtpType, ContentType,
    PacketType, ProtocolData,
};

/// How long after its `expires_at` an unanswered outgoing request is dropped from the table.
pub const PURGE_GRACE_MS: i64 = 5_000;

/// The most protocolData entries an auth Message may carry (JS adds `btpAuthFlags` entries;
/// this bounds the duplicate-name check).
pub const AUTH_ENTRIES_MAX: usize = 32;

/// The largest `in_flight_max` a session accepts.
pub const IN_FLIGHT_MAX_LIMIT: usize = 1 << 20;

/// The most bytes [`BtpSession::handle_auth`] and [`BtpSession::handle_message`] write into
/// `out` (an auth Response or an Error); `out` must be at least this long.
pub const CONTROL_LEN_MAX: usize = 128;

/// Which end of the WebSocket we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The peer connected to us; we check its auth.
    Server,
    /// We connected to the peer; we send auth.
    Client,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Before a successful auth handshake; no ILP may flow.
    AwaitingAuth,
    /// Authenticated as this peer.
    Open(PeerId),
    /// Finished: the driver closes the socket (after sending any bytes it was given).
    Closed,
}

/// The outcome of the server's auth check ([`BtpSession::handle_auth`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthEvent {
    /// The session is open for `peer`; send `out[..len]` (the auth Response).
    Accepted {
        /// The authenticated peer.
        peer: PeerId,
        /// Bytes of the Response in `out`.
        len: usize,
    },
    /// The session is closed; send `out[..len]` (an Error, or nothing when `len` is 0), then
    /// close the socket.
    Refused {
        /// Bytes of the Error in `out`.
        len: usize,
    },
}

/// What one received WebSocket message means ([`BtpSession::handle_message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Client: the server accepted our auth; the session is open for this peer.
    Opened(PeerId),
    /// An incoming ILP request: hand `ilp` to the engine and answer with a Fulfill or Reject
    /// behind [`BtpSession::write_reply_header`] for `request_id`.
    Prepare {
        /// The peer's BTP request id, to echo in the reply.
        request_id: u32,
        /// Where the ILP packet (a Prepare, or bytes the engine will refuse with F01) lies in
        /// the message given to [`BtpSession::handle_message`].
        ilp: Range<usize>,
    },
    /// The answer to one of our Prepares: hand `ilp` to the engine for `tag`.
    Reply {
        /// The tag given to [`BtpSession::write_prepare_header`].
        tag: u64,
        /// Where the ILP Fulfill or Reject (checked by the engine, not here) lies in the
        /// message.
        ilp: Range<usize>,
    },
    /// One of our Prepares failed at the BTP level: a BTP Error (with its code), or a
    /// Response with no `ilp` entry (`F00`). We answer upstream with ILP T01 for `T00`
    /// (UnreachableError), F02 otherwise; the JS connector answers F02 for any.
    ReplyError {
        /// The tag given to [`BtpSession::write_prepare_header`].
        tag: u64,
        /// The BTP error code (not an ILP one).
        code: [u8; 3],
    },
    /// Send `out[..len]` (an Error answering the message) and carry on.
    Respond(usize),
    /// Nothing to send or do (an unexpected reply, or an unreadable message under the limit);
    /// it was counted.
    Ignored,
    /// Close the socket; the session is [`State::Closed`].
    Close,
}

/// Why [`BtpSession::write_prepare_header`] could not take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// `in_flight_max` requests are outstanding: answer T03.
    Busy,
    /// The session is not open (auth pending, or closed): answer T01.
    NotOpen,
}

/// What [`BtpSession::handle_timeout`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeout {
    /// The auth deadline passed: the session is now [`State::Closed`]; close the socket.
    pub auth_expired: bool,
    /// Outstanding requests dropped because their expiry (plus [`PURGE_GRACE_MS`]) passed.
    pub purged: usize,
}

/// Per-session tallies, pulled by metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Messages that were not readable BTP.
    pub unreadable: u64,
    /// Replies (Fulfill, Reject, Response, Error) for ids that were not outstanding.
    pub ignored: u64,
    /// Failed auth handshakes (either role), timeouts included.
    pub auth_failures: u64,
    /// Incoming ILP requests handed to the driver.
    pub prepares: u64,
    /// Replies matched to our requests.
    pub replies: u64,
    /// BTP Errors (or empty Responses) matched to our requests.
    pub reply_errors: u64,
    /// Errors we answered with after auth (no `ilp` entry, Transfer).
    pub refused: u64,
    /// Outgoing requests refused because the table was full.
    pub busy: u64,
    /// Outstanding requests purged by [`BtpSession::handle_timeout`].
    pub purged: u64,
}

/// Why a request was refused; each is a complete static JSON `data` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotAuth,
    TooManyEntries,
    DuplicateNames,
    MissingToken,
    BadToken,
    Unsupported,
    Transfer,
}

impl Refusal {
    const ALL: [Refusal; 7] = [
        Refusal::NotAuth,
        Refusal::TooManyEntries,
        Refusal::DuplicateNames,
        Refusal::MissingToken,
        Refusal::BadToken,
        Refusal::Unsupported,
        Refusal::Transfer,
    ];

    const fn data(self) -> &'static [u8] {
        match self {
            Refusal::NotAuth => br#"{"message":"expected auth message"}"#,
            Refusal::TooManyEntries => br#"{"message":"too many protocol data entries"}"#,
            Refusal::DuplicateNames => br#"{"message":"duplicate protocol data names"}"#,
            Refusal::MissingToken => br#"{"message":"missing auth_token"}"#,
            Refusal::BadToken => br#"{"message":"invalid auth_token"}"#,
            Refusal::Unsupported => br#"{"message":"unsupported protocol"}"#,
            Refusal::Transfer => br#"{"message":"transfers are not supported"}"#,
        }
    }
}

const ERROR_CODE: [u8; 3] = *b"F00";
const ERROR_NAME: &[u8] = b"NotAcceptedError";

/// Bytes of our Error packet with `data_len` bytes of data, while its body stays under 128
/// bytes (one-byte length prefixes everywhere).
const fn error_len(data_len: usize) -> usize {
    let body = 3 + 1 + ERROR_NAME.len() + 1 + timestamp::GENERALIZED_TIME_LEN + 1 + data_len + 2;
    5 + 1 + body
}

const _: () = {
    let mut i = 0;
    while i < Refusal::ALL.len() {
        let data_len = Refusal::ALL[i].data().len();
        assert!(data_len < 128);
        assert!(error_len(data_len) - 6 < 128);
        assert!(error_len(data_len) <= CONTROL_LEN_MAX);
        i += 1;
    }
    // The auth Response: header, length 2, empty protocolData.
    assert!(5 + 1 + 2 <= CONTROL_LEN_MAX);
    assert!(IN_FLIGHT_MAX_LIMIT <= 1 << 31);
};

/// One outstanding outgoing request.
#[derive(Debug, Clone, Copy)]
struct Slot {
    used: bool,
    request_id: u32,
    tag: u64,
    /// When the entry may be purged: `expires_at + PURGE_GRACE_MS`.
    purge_at: i64,
}

const SLOT_FREE: Slot = Slot {
    used: false,
    request_id: 0,
    tag: 0,
    purge_at: 0,
};

/// Slots of a new session's table of outstanding requests (see `BtpSession::slots`).
const SLOTS_INITIAL: usize = 16;

/// The BTP state of one WebSocket connection. See the module docs.
pub struct BtpSession {
    role: Role,
    state: State,
    /// When a session still awaiting auth closes (either role).
    auth_deadline: i64,
    /// Client: the peer we dialled (reported once open).
    client_peer: PeerId,
    /// Client: the request id of our auth Message, once sent.
    auth_request_id: Option<u32>,
    next_request_id: u32,
    /// Our outstanding requests, each in the slot `request_id & mask`. The table starts at
    /// [`SLOTS_INITIAL`] and doubles while more than half of it is in use, up to
    /// `in_flight_max` rounded up to a power of two: an idle link costs a few hundred bytes,
    /// not the whole table.
    slots: Box<[Slot]>,
    mask: u32,
    in_flight_max: usize,
    outstanding: usize,
    /// No entry may be purged before this: a lower bound, recomputed by each purge, so it
    /// may be early (never late) after replies free entries.
    next_purge_at: i64,
    /// Where [`BtpSession::poll_abandoned`] resumes.
    abandon_cursor: usize,
    bad_frames: u32,
    bad_frames_max: u32,
    counters: Counters,
}

impl fmt::Debug for BtpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BtpSession")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("outstanding", &self.outstanding)
            .field("in_flight_max", &self.in_flight_max)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl BtpSession {
    /// A session for a connection a peer opened to us. It must authenticate within
    /// `auth_timeout_ms` of `now`; at most `in_flight_max` of our requests may be outstanding;
    /// it is closed on the `bad_frames_max`-th unreadable message.
    ///
    /// # Panics
    /// If `in_flight_max` is 0 or above [`IN_FLIGHT_MAX_LIMIT`] (a config error).
    pub fn server(
        now: i64,
        auth_timeout_ms: i64,
        in_flight_max: usize,
        bad_frames_max: u32,
    ) -> Self {
        Self::new(
            Role::Server,
            now.saturating_add(auth_timeout_ms),
            PeerId(0),
            in_flight_max,
            bad_frames_max,
        )
    }

    /// A session for a connection we opened to `peer`. The server must accept our auth within
    /// `auth_timeout_ms` of `now`; the other limits are as for [`server`](Self::server).
    ///
    /// # Panics
    /// If `in_flight_max` is 0 or above [`IN_FLIGHT_MAX_LIMIT`] (a config error).
    pub fn client(
        now: i64,
        peer: PeerId,
        auth_timeout_ms: i64,
        in_flight_max: usize,
        bad_frames_max: u32,
    ) -> Self {
        Self::new(
            Role::Client,
            now.saturating_add(auth_timeout_ms),
            peer,
            in_flight_max,
            bad_frames_max,
        )
    }

    fn new(
        role: Role,
        auth_deadline: i64,
        client_peer: PeerId,
        in_flight_max: usize,
        bad_frames_max: u32,
    ) -> Self {
        assert!(in_flight_max > 0, "in_flight_max must be positive");
        assert!(
            in_flight_max <= IN_FLIGHT_MAX_LIMIT,
            "in_flight_max too large"
        );
        let capacity = in_flight_max.next_power_of_two().min(SLOTS_INITIAL);
        BtpSession {
            role,
            state: State::AwaitingAuth,
            auth_deadline,
            client_peer,
            auth_request_id: None,
            next_request_id: 1,
            slots: vec![SLOT_FREE; capacity].into_boxed_slice(),
            mask: (capacity - 1) as u32,
            in_flight_max,
            outstanding: 0,
            next_purge_at: i64::MAX,
            abandon_cursor: 0,
            bad_frames: 0,
            bad_frames_max,
            counters: Counters::default(),
        }
    }

    /// Which end we are.
    #[inline]
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the session is.
    #[inline]
    pub fn state(&self) -> State {
        self.state
    }

    /// How many of our requests await an answer.
    #[inline]
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The tallies so far.
    #[inline]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work, if ever.
    pub fn poll_timeout(&self) -> Option<i64> {
        match self.state {
            State::Closed => None,
            State::AwaitingAuth => Some(self.auth_deadline),
            State::Open(_) => (self.outstanding > 0).then_some(self.next_purge_at),
        }
    }

    /// Bytes [`write_auth`](Self::write_auth) writes for this username and token.
    pub fn auth_len(username: &[u8], token: &[u8]) -> usize {
        auth_repr(0, &auth_entries(username, token)).buffer_len()
    }

    /// Client: writes the auth Message (`auth`, `auth_username`, `auth_token`) into `out`
    /// and returns its length. Send it first; the Response to it opens the session.
    ///
    /// # Panics
    /// If `out` is shorter than [`auth_len`](Self::auth_len), or this is a server session, or
    /// auth was already written (programmer errors).
    pub fn write_auth(&mut self, username: &[u8], token: &[u8], out: &mut [u8]) -> usize {
        assert_eq!(self.role, Role::Client, "only a client sends auth");
        assert!(self.auth_request_id.is_none(), "auth already written");
        let entries = auth_entries(username, token);
        let request_id = self.next_request_id;
        let repr = auth_repr(request_id, &entries);
        assert!(out.len() >= repr.buffer_len(), "out too short for auth");
        self.next_request_id = request_id.wrapping_add(1);
        self.auth_request_id = Some(request_id);
        repr.emit(out)
    }

    /// Server: checks the first message of the connection, `bytes`, as the auth handshake
    /// against `auth` and the account named by the WebSocket path (see the module docs).
    /// Whatever the outcome, send `out[..len]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`CONTROL_LEN_MAX`] (a programmer error). Never on `bytes`.
    pub fn handle_auth(
        &mut self,
        now: i64,
        auth: &PeerAuth,
        path_account: Option<&str>,
        cert: Option<PeerId>,
        bytes: &[u8],
        out: &mut [u8],
    ) -> AuthEvent {
        assert!(
            out.len() >= CONTROL_LEN_MAX,
            "out shorter than CONTROL_LEN_MAX"
        );
        if self.state == State::Closed {
            // Too late (the auth deadline passed) or already refused: nothing more to say.
            return AuthEvent::Refused { len: 0 };
        }
        let expected = self.role == Role::Server && self.state == State::AwaitingAuth;
        debug_assert!(
            expected,
            "handle_auth on a {:?} session in {:?}",
            self.role, self.state
        );
        if !expected {
            self.state = State::Closed;
            return AuthEvent::Refused { len: 0 };
        }
        let Ok(packet) = Btp::new_checked(bytes) else {
            // No request id to answer: send nothing (RFC 23) and close.
            self.counters.unreadable += 1;
            self.counters.auth_failures += 1;
            self.state = State::Closed;
            return AuthEvent::Refused { len: 0 };
        };
        let request_id = packet.request_id();
        match check_auth(&packet, auth, path_account, cert) {
            Ok(peer) => {
                self.state = State::Open(peer);
                let len = BtpRepr {
                    request_id,
                    body: BtpBody::Response,
                    protocol_data: &[],
                }
                .emit(out);
                AuthEvent::Accepted { peer, len }
            }
            Err(refusal) => {
                self.counters.auth_failures += 1;
                self.state = State::Closed;
                AuthEvent::Refused {
                    len: write_error(now, request_id, refusal, out),
                }
            }
        }
    }

    /// Takes one binary WebSocket message. See the module docs for the dispatch table; for
    /// [`Event::Respond`] send `out[..len]`.
    ///
    /// A server session must pass its first message to [`handle_auth`](Self::handle_auth)
    /// instead; given one here it closes.
    ///
    /// # Panics
    /// If `out` is shorter than [`CONTROL_LEN_MAX`] (a programmer error). Never on `bytes`.
    pub fn handle_message(&mut self, now: i64, bytes: &[u8], out: &mut [u8]) -> Event {
        assert!(
            out.len() >= CONTROL_LEN_MAX,
            "out shorter than CONTROL_LEN_MAX"
        );
        match self.state {
            State::Open(_) => {}
            State::Closed => return Event::Close,
            State::AwaitingAuth => return self.handle_auth_reply(bytes),
        }
        let Ok(packet) = Btp::new_checked(bytes) else {
            return self.unreadable();
        };
        let request_id = packet.request_id();
        let btp_type = packet.btp_type();
        match packet.body() {
            BtpBody::Transfer { .. } => self.refuse(now, request_id, Refusal::Transfer, out),
            BtpBody::Error { code, .. } => match self.take(request_id) {
                Some(tag) => {
                    self.counters.reply_errors += 1;
                    Event::ReplyError { tag, code }
                }
                None => self.ignored(),
            },
            BtpBody::Message | BtpBody::Response => {
                let is_message = btp_type == BtpType::Message;
                let Some(ilp) = packet.ilp_range() else {
                    if is_message {
                        return self.refuse(now, request_id, Refusal::Unsupported, out);
                    }
                    return match self.take(request_id) {
                        Some(tag) => {
                            self.counters.reply_errors += 1;
                            Event::ReplyError {
                                tag,
                                code: ERROR_CODE,
                            }
                        }
                        None => self.ignored(),
                    };
                };
                let ilp_type = bytes
                    .get(ilp.start)
                    .copied()
                    .and_then(PacketType::from_byte);
                match ilp_type {
                    Some(PacketType::Prepare) => self.prepare(request_id, ilp),
                    Some(PacketType::Fulfill | PacketType::Reject) => self.reply(request_id, ilp),
                    // Not an ILP packet: a request the engine refuses (F01), or a broken
                    // answer to one of ours, which the engine refuses as a reply.
                    None if is_message => self.prepare(request_id, ilp),
                    None => self.reply(request_id, ilp),
                }
            }
        }
    }

    /// Takes a request id for an outgoing Prepare of `ilp_len` bytes, remembers `tag` for its
    /// answer until `expires_at` (plus [`PURGE_GRACE_MS`]), and writes the BTP Message header
    /// into `out`. The caller writes the ILP bytes at `out[len..len + ilp_len]` and sends
    /// `out[..len + ilp_len]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`ilp_header_len`]`(ilp_len)` (a programmer error).
    pub fn write_prepare_header(
        &mut self,
        tag: u64,
        ilp_len: usize,
        expires_at: i64,
        out: &mut [u8],
    ) -> Result<usize, SendError> {
        assert!(
            out.len() >= ilp_header_len(ilp_len),
            "out too short for the header"
        );
        if !matches!(self.state, State::Open(_)) {
            return Err(SendError::NotOpen);
        }
        let Some(request_id) = self.insert(tag, expires_at) else {
            self.counters.busy += 1;
            return Err(SendError::Busy);
        };
        Ok(emit_ilp_header(out, BtpType::Message, request_id, ilp_len))
    }

    /// Writes the BTP Response header for the Fulfill or Reject (`ilp_len` bytes) answering
    /// the peer's `request_id` ([`Event::Prepare`]). The caller writes the ILP bytes right
    /// after the returned length.
    ///
    /// # Panics
    /// If `out` is shorter than [`ilp_header_len`]`(ilp_len)` (a programmer error).
    pub fn write_reply_header(&self, request_id: u32, ilp_len: usize, out: &mut [u8]) -> usize {
        assert!(
            out.len() >= ilp_header_len(ilp_len),
            "out too short for the header"
        );
        debug_assert!(
            matches!(self.state, State::Open(_)),
            "reply on a session not open"
        );
        emit_ilp_header(out, BtpType::Response, request_id, ilp_len)
    }

    /// Advances the clock: closes a session still unauthenticated at its deadline, and purges
    /// outstanding requests whose `expires_at + PURGE_GRACE_MS` has passed.
    pub fn handle_timeout(&mut self, now: i64) -> Timeout {
        let mut result = Timeout::default();
        if self.state == State::AwaitingAuth && now >= self.auth_deadline {
            self.state = State::Closed;
            self.counters.auth_failures += 1;
            result.auth_expired = true;
        }
        if self.outstanding > 0 && now >= self.next_purge_at {
            result.purged = self.purge(now);
        }
        result
    }

    /// Closes the session from the driver's side (the socket went away, or the link is being
    /// replaced). Afterwards [`poll_abandoned`](Self::poll_abandoned) drains the outstanding
    /// requests and every message gets [`Event::Close`].
    pub fn close(&mut self) {
        self.state = State::Closed;
    }

    /// After the session closed: the tag of one request that will now never be answered, so
    /// the caller can fail it (T01) at once instead of waiting for its expiry; `None` when all
    /// are drained (or the session is not closed).
    pub fn poll_abandoned(&mut self) -> Option<u64> {
        if self.state != State::Closed {
            return None;
        }
        while self.abandon_cursor < self.slots.len() {
            let slot = &mut self.slots[self.abandon_cursor];
            self.abandon_cursor += 1;
            if slot.used {
                slot.used = false;
                self.outstanding -= 1;
                return Some(slot.tag);
            }
        }
        debug_assert_eq!(self.outstanding, 0);
        None
    }

    // ---- receive helpers --------------------------------------------------------------

    /// Any message while awaiting auth (client: the auth Response; server: misuse).
    fn handle_auth_reply(&mut self, bytes: &[u8]) -> Event {
        let accepted = match (self.role, self.auth_request_id, Btp::new_checked(bytes)) {
            (Role::Client, Some(auth_id), Ok(packet)) => {
                packet.btp_type() == BtpType::Response && packet.request_id() == auth_id
            }
            _ => false,
        };
        if accepted {
            self.state = State::Open(self.client_peer);
            return Event::Opened(self.client_peer);
        }
        // An Error, anything else first, or a server given its first message here.
        self.counters.auth_failures += 1;
        self.state = State::Closed;
        Event::Close
    }

    fn prepare(&mut self, request_id: u32, ilp: Range<usize>) -> Event {
        self.counters.prepares += 1;
        Event::Prepare { request_id, ilp }
    }

    fn reply(&mut self, request_id: u32, ilp: Range<usize>) -> Event {
        match self.take(request_id) {
            Some(tag) => {
                self.counters.replies += 1;
                Event::Reply { tag, ilp }
            }
            None => self.ignored(),
        }
    }

    fn ignored(&mut self) -> Event {
        self.counters.ignored += 1;
        Event::Ignored
    }

    fn unreadable(&mut self) -> Event {
        self.counters.unreadable += 1;
        self.bad_frames = self.bad_frames.saturating_add(1);
        if self.bad_frames >= self.bad_frames_max {
            self.state = State::Closed;
            return Event::Close;
        }
        Event::Ignored
    }

    fn refuse(&mut self, now: i64, request_id: u32, refusal: Refusal, out: &mut [u8]) -> Event {
        self.counters.refused += 1;
        Event::Respond(write_error(now, request_id, refusal, out))
    }

    // ---- outstanding table --------------------------------------------------------------

    /// Allocates the next request id whose home slot is free and fills the slot.
    fn insert(&mut self, tag: u64, expires_at: i64) -> Option<u32> {
        if self.outstanding >= self.in_flight_max {
            return None;
        }
        if self.outstanding >= self.slots.len() / 2
            && self.slots.len() < self.in_flight_max.next_power_of_two()
        {
            self.grow();
        }
        let purge_at = expires_at.saturating_add(PURGE_GRACE_MS);
        // Fewer than `capacity` slots are busy and `capacity` consecutive ids cover every
        // slot once, so this finds a free one.
        for _ in 0..self.slots.len() {
            let request_id = self.next_request_id;
            self.next_request_id = request_id.wrapping_add(1);
            let slot = &mut self.slots[(request_id & self.mask) as usize];
            if !slot.used {
                *slot = Slot {
                    used: true,
                    request_id,
                    tag,
                    purge_at,
                };
                self.outstanding += 1;
                self.next_purge_at = self.next_purge_at.min(purge_at);
                return Some(request_id);
            }
        }
        unreachable!("outstanding < in_flight_max <= capacity, yet no free slot");
    }

    /// Doubles the table of outstanding requests. Entries in distinct slots under the old mask
    /// are in distinct slots under the new one (it only adds a bit).
    fn grow(&mut self) {
        let len = self.slots.len() * 2;
        let mut slots = vec![SLOT_FREE; len].into_boxed_slice();
        let mask = (len - 1) as u32;
        for slot in self.slots.iter().filter(|slot| slot.used) {
            slots[(slot.request_id & mask) as usize] = *slot;
        }
        self.slots = slots;
        self.mask = mask;
    }

    /// Frees the entry for `request_id`, if it is outstanding, and returns its tag.
    #[inline]
    fn take(&mut self, request_id: u32) -> Option<u64> {
        let slot = &mut self.slots[(request_id & self.mask) as usize];
        if slot.used && slot.request_id == request_id {
            slot.used = false;
            self.outstanding -= 1;
            Some(slot.tag)
        } else {
            None
        }
    }

    /// Frees entries due for purging and recomputes the next purge time.
    fn purge(&mut self, now: i64) -> usize {
        let mut purged = 0;
        let mut next = i64::MAX;
        for slot in self.slots.iter_mut().filter(|slot| slot.used) {
            if slot.purge_at <= now {
                slot.used = false;
                purged += 1;
            } else {
                next = next.min(slot.purge_at);
            }
        }
        self.outstanding -= purged;
        self.next_purge_at = next;
        self.counters.purged += purged as u64;
        purged
    }
}

/// The server's auth checks, in order; the peer on success. `cert`: the peer the link's TLS
/// client certificate stands for, which may leave the token out.
fn check_auth(
    packet: &Btp<&[u8]>,
    auth: &PeerAuth,
    path_account: Option<&str>,
    cert: Option<PeerId>,
) -> Result<PeerId, Refusal> {
    if packet.btp_type() != BtpType::Message {
        return Err(Refusal::NotAuth);
    }
    match packet.protocol_data().next() {
        Some(primary) if primary.name == b"auth" => {}
        _ => return Err(Refusal::NotAuth),
    }
    let count = packet.protocol_data_count();
    if count > AUTH_ENTRIES_MAX {
        return Err(Refusal::TooManyEntries);
    }
    // At most AUTH_ENTRIES_MAX² / 2 name compares.
    for (i, entry) in packet.protocol_data().enumerate() {
        if packet
            .protocol_data()
            .skip(i + 1)
            .any(|other| other.name == entry.name)
        {
            return Err(Refusal::DuplicateNames);
        }
    }
    let token = match (packet.find(b"auth_token"), cert) {
        (Some(entry), _) => entry.data,
        (None, Some(_)) => &[],
        (None, None) => return Err(Refusal::MissingToken),
    };
    let username = packet.find(b"auth_username").map(|entry| entry.data);
    auth.authenticate_with_cert(username, path_account, token, cert)
        .ok_or(Refusal::BadToken)
}

fn auth_entries<'a>(username: &'a [u8], token: &'a [u8]) -> [ProtocolData<'a>; 3] {
    [
        ProtocolData {
            name: b"auth",
            content_type: ContentType::OCTET_STREAM,
            data: &[],
        },
        ProtocolData {
            name: b"auth_username",
            content_type: ContentType::TEXT_PLAIN_UTF8,
            data: username,
        },
        ProtocolData {
            name: b"auth_token",
            content_type: ContentType::TEXT_PLAIN_UTF8,
            data: token,
        },
    ]
}

fn auth_repr<'a>(request_id: u32, entries: &'a [ProtocolData<'a>]) -> BtpRepr<'a> {
    BtpRepr {
        request_id,
        body: BtpBody::Message,
        protocol_data: entries,
    }
}

/// Writes Error F00 `NotAcceptedError` for `request_id` into `out`; returns its length.
fn write_error(now: i64, request_id: u32, refusal: Refusal, out: &mut [u8]) -> usize {
    let triggered_at = timestamp::format_generalized(now);
    let len = BtpRepr {
        request_id,
        body: BtpBody::Error {
            code: ERROR_CODE,
            name: ERROR_NAME,
            triggered_at: &triggered_at,
            data: refusal.data(),
        },
        protocol_data: &[],
    }
    .emit(out);
    debug_assert_eq!(len, error_len(refusal.data().len()));
    len
}

/// `inner`, a subslice of `outer` borrowed through a shorter-lived view, re-borrowed from
/// `outer` so it outlives the view (the wire view's accessors borrow the view itself).
#[cfg(test)]
mod tests;
