//! CCP, the route exchange between connectors: the payloads of `peer.route.control` and
//! `peer.route.update`, decoded into owned structs and encoded back.
//!
//! RFC 10 is deprecated (it describes the JSON broadcasts from before ILPv4). The ILPv4 wire
//! format is defined only by the reference libraries, `ilp-protocol-ccp` (JS, used by
//! ilp-connector) and interledger-rs's `interledger-ccp`, and they agree on every byte.
//! Integers are big-endian:
//!
//! ```text
//! Route Control Request, data of a Prepare to peer.route.control
//!   mode                      UInt8: 0 IDLE (stop sending me updates), 1 SYNC (send them)
//!   lastKnownRoutingTableId   16 bytes, a UUID; all zero at start
//!   lastKnownEpoch            UInt32
//!   features                  var-uint count, then count × var-octet-string (UTF-8)
//!
//! Route Update Request, data of a Prepare to peer.route.update
//!   routingTableId            16 bytes, a UUID
//!   currentEpochIndex         UInt32
//!   fromEpochIndex            UInt32
//!   toEpochIndex              UInt32
//!   holdDownTime              UInt32, milliseconds
//!   speaker                   var-octet-string, an ILP address
//!   newRoutes                 var-uint count, then count × route
//!   withdrawnRoutes           var-uint count, then count × var-octet-string (a prefix)
//!
//! route   prefix var-octet-string · path var-uint count + count × var-octet-string (addresses)
//!         · auth 32 bytes · props var-uint count + count × prop
//! prop    meta UInt8 (0x80 optional, 0x40 transitive, 0x20 partial, 0x10 value is UTF-8)
//!         · id UInt16 · value var-octet-string
//! ```
//!
//! # Decoder policy
//!
//! Every field is checked once, left to right; the first rule broken is the [`Error`], and it
//! names the field. No input makes the decoder panic. Where the references disagree, our
//! choice is the stricter one, interledger-rs's, as the vectors (`tests/vectors/ccp.json`)
//! require:
//!
//! - a `mode` other than 0 or 1 is refused (interledger-rs refuses it; JS takes any byte);
//! - the `speaker` must be an ILP address (RFC 15) (interledger-rs checks it; JS does not);
//! - features must be UTF-8 (interledger-rs refuses other bytes; JS replaces them).
//!
//! And where neither reference checks, our own rules:
//!
//! - every hop of a `path` is an ILP address, as the format says it is;
//! - a prefix (of a new route or a withdrawn one) is an ILP address or a scheme on its own
//!   (`g`), the rule of route keys in `engine::route`. The bare scheme must pass: a default
//!   route travels under the global prefix, and the route exchange's import filter, not the
//!   codec, drops it;
//! - lengths are canonical (RFC 30), and so are var-uint counts (no redundant leading zero), so
//!   anything accepted re-encodes to exactly the bytes it came from;
//! - a count above our limit ([`ROUTES_PER_UPDATE_MAX`], [`PATH_LEN_MAX`], …) is refused
//!   before anything is allocated for it. A count above what the bytes left could hold gets
//!   room only for what they could hold, and is refused where the bytes run out (the vectors'
//!   convention: the error is the first rule broken reading left to right);
//! - the prop `meta` byte is kept whole, its four undefined low bits included, and the UTF-8
//!   flag is not checked against the value: no prop is defined, and neither reference looks
//!   inside one;
//! - bytes after the last field are accepted and ignored (RFC 30 "Extensibility"), as both
//!   references and `wire` do; they are never emitted.
//!
//! So the encoders' output for a decoded value is exactly the input up to the last field (the
//! `ccp_parse` fuzz target checks this), and the vectors re-encode byte for byte.
//!
//! # Requests and answers
//!
//! A receiver checks destination, condition and expiry before decoding, as both references do:
//! [`Request::from_prepare`] does the first two and decodes; the expiry needs a clock and
//! stays with the caller (R02, where JS throws and interledger-rs refuses). An accepted request
//! is answered with [`CCP_RESPONSE`], a malformed one with F00 (both references), a wrong
//! condition with F01 (as the engine already answers `peer.route.*` today).
//!
//! # Non-goals
//!
//! The route exchange itself (epochs and gaps, hold-down, import and export filters, relaying
//! with `auth = SHA-256(auth)`), building Prepares, any clock. Decoding allocates: this is the
//! control plane, never the packet path.
//!
//! Over 800 lines because the two messages' decoders and encoders, their error type and our
//! limits read best side by side; the tests are in `ccp_tests.rs`.

use crate::engine::route::is_route_prefix;
use crate::engine::PEER_PROTOCOL_CONDITION;
use crate::wire::oer::{self, Reader, Writer};
use crate::wire::{self, check_address, Prepare, ADDRESS_LEN_MIN};
use core::fmt;

// ---------------------------------------------------------------------------------------------
// Peer-protocol constants (the condition is `engine::PEER_PROTOCOL_CONDITION`)
// ---------------------------------------------------------------------------------------------

/// The destination of a Route Control Request.
pub const CCP_CONTROL_DESTINATION: &[u8] = b"peer.route.control";

/// The destination of a Route Update Request.
pub const CCP_UPDATE_DESTINATION: &[u8] = b"peer.route.update";

/// The fulfillment of every peer-protocol request (ILDCP, CCP): 32 zero bytes. Its SHA-256 is
/// [`PEER_PROTOCOL_CONDITION`].
pub const PEER_PROTOCOL_FULFILLMENT: [u8; 32] = [0; 32];

/// The answer to an accepted CCP request: a Fulfill with [`PEER_PROTOCOL_FULFILLMENT`] and
/// empty data (type 13, length 33, the fulfillment, an empty var-octet-string).
pub const CCP_RESPONSE: [u8; 35] = {
    let mut bytes = [0u8; 35];
    bytes[0] = 13;
    bytes[1] = 33;
    bytes
};

// ---------------------------------------------------------------------------------------------
// Our limits
// ---------------------------------------------------------------------------------------------

/// Our limit on `newRoutes` in one update (neither reference has one). A route takes at least
/// [`ROUTE_LEN_MIN`] bytes, so a Prepare's data (at most 32 767 bytes) never holds more: the
/// limit bounds what any slice can make the decoder allocate, and refuses no update that fits
/// in a Prepare.
pub const ROUTES_PER_UPDATE_MAX: usize = 1024;

/// Our limit on `withdrawnRoutes` in one update (neither reference has one). A prefix takes at
/// least 2 bytes (`01 67`, the bare scheme `g`); like [`ROUTES_PER_UPDATE_MAX`], it refuses no
/// update that fits in a Prepare.
pub const WITHDRAWN_ROUTES_PER_UPDATE_MAX: usize = 16_384;

/// Our limit on the hops in one route's `path` (neither reference has one). Generous on
/// purpose: one long path refuses the whole update, so this bounds memory, not policy; a
/// tighter rule on path length belongs to the route exchange's import filter, which can drop
/// the one route.
pub const PATH_LEN_MAX: usize = 256;

/// Our limit on `props` in one route. No prop id is defined and neither reference uses props.
pub const PROPS_PER_ROUTE_MAX: usize = 16;

/// Our limit on the bytes of one prop's `value`.
pub const PROP_VALUE_LEN_MAX: usize = 1024;

/// Our limit on `features` in one control request (both references send none and ignore them).
pub const FEATURES_MAX: usize = 16;

/// Our limit on the bytes of one feature.
pub const FEATURE_LEN_MAX: usize = 256;

/// The fewest bytes a route takes: a one-byte prefix (`g`) with its length, an empty path
/// (`01 00`), the auth, no props (`01 00`).
pub const ROUTE_LEN_MIN: usize = 2 + 2 + AUTH_LEN + 2;

/// Bytes in a routing table id (a UUID).
pub const ROUTING_TABLE_ID_LEN: usize = 16;

/// Bytes in a route's `auth`.
pub const AUTH_LEN: usize = 32;

/// The fewest bytes of a path hop: an address of [`ADDRESS_LEN_MIN`] and its length byte.
const HOP_LEN_MIN: usize = 1 + ADDRESS_LEN_MIN;
/// The fewest bytes of a prefix: the bare scheme `g` and its length byte.
const PREFIX_LEN_MIN: usize = 2;
/// The fewest bytes of a prop: meta, id, an empty value.
const PROP_LEN_MIN: usize = 1 + 2 + 1;
/// The fewest bytes of a feature: an empty string.
const FEATURE_LEN_MIN: usize = 1;

const _: () = assert!(ROUTES_PER_UPDATE_MAX * ROUTE_LEN_MIN > wire::DATA_LEN_MAX);
const _: () = assert!(WITHDRAWN_ROUTES_PER_UPDATE_MAX * PREFIX_LEN_MIN > wire::DATA_LEN_MAX);
const _: () = assert!(PROP_VALUE_LEN_MAX < wire::DATA_LEN_MAX);

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A field of a CCP payload, named as the reference libraries name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// Control: `mode`.
    Mode,
    /// Control: `lastKnownRoutingTableId`.
    LastKnownRoutingTableId,
    /// Control: `lastKnownEpoch`.
    LastKnownEpoch,
    /// Control: the count of `features`.
    Features,
    /// Control: one of the `features`.
    Feature,
    /// Update: `routingTableId`.
    RoutingTableId,
    /// Update: `currentEpochIndex`.
    CurrentEpochIndex,
    /// Update: `fromEpochIndex`.
    FromEpochIndex,
    /// Update: `toEpochIndex`.
    ToEpochIndex,
    /// Update: `holdDownTime`.
    HoldDownTime,
    /// Update: `speaker`.
    Speaker,
    /// Update: the count of `newRoutes`.
    NewRoutes,
    /// A new route's `prefix`.
    Prefix,
    /// The count of a new route's `path`.
    Path,
    /// One hop of a new route's `path`.
    PathHop,
    /// A new route's `auth`.
    Auth,
    /// The count of a new route's `props`.
    Props,
    /// A prop's `meta` byte.
    PropMeta,
    /// A prop's `id`.
    PropId,
    /// A prop's `value`.
    PropValue,
    /// Update: the count of `withdrawnRoutes`.
    WithdrawnRoutes,
    /// One of the `withdrawnRoutes`.
    WithdrawnRoute,
}

impl Field {
    /// The field's name in the reference libraries (and in the vectors' JSON).
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::Mode => "mode",
            Field::LastKnownRoutingTableId => "lastKnownRoutingTableId",
            Field::LastKnownEpoch => "lastKnownEpoch",
            Field::Features => "features (count)",
            Field::Feature => "features[]",
            Field::RoutingTableId => "routingTableId",
            Field::CurrentEpochIndex => "currentEpochIndex",
            Field::FromEpochIndex => "fromEpochIndex",
            Field::ToEpochIndex => "toEpochIndex",
            Field::HoldDownTime => "holdDownTime",
            Field::Speaker => "speaker",
            Field::NewRoutes => "newRoutes (count)",
            Field::Prefix => "newRoutes[].prefix",
            Field::Path => "newRoutes[].path (count)",
            Field::PathHop => "newRoutes[].path[]",
            Field::Auth => "newRoutes[].auth",
            Field::Props => "newRoutes[].props (count)",
            Field::PropMeta => "newRoutes[].props[].meta",
            Field::PropId => "newRoutes[].props[].id",
            Field::PropValue => "newRoutes[].props[].value",
            Field::WithdrawnRoutes => "withdrawnRoutes (count)",
            Field::WithdrawnRoute => "withdrawnRoutes[]",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a CCP payload (or the Prepare carrying it) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// An OER rule broken in the field: the payload ends inside it (`Truncated`), a length or
    /// a count declares more than the bytes left (`LengthOverflow`), a length determinant is
    /// not canonical, indefinite or too large, or a var-uint is 0 or over 8 bytes long.
    Oer(Field, wire::Error),
    /// A var-uint count with a redundant leading zero byte.
    NonCanonicalVarUint(Field),
    /// Not an ILP address (RFC 15), or for a prefix, not an address or a scheme on its own.
    InvalidAddress(Field),
    /// Not UTF-8.
    InvalidUtf8(Field),
    /// A `mode` other than 0 (IDLE) or 1 (SYNC).
    InvalidMode(u8),
    /// More entries than our limit.
    TooMany {
        /// The count's field.
        field: Field,
        /// Our limit.
        max: usize,
    },
    /// A string longer than our limit.
    TooLong {
        /// The field.
        field: Field,
        /// Our limit, in bytes.
        max: usize,
    },
    /// The Prepare's destination is neither `peer.route.control` nor `peer.route.update`.
    NotCcp,
    /// The Prepare's condition is not the peer-protocol condition.
    InvalidCondition,
}

impl Error {
    /// A category name, those of the shared vectors where one fits.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Error::Oer(_, e) => e.as_str(),
            Error::NonCanonicalVarUint(_) => "non_canonical_var_uint",
            Error::InvalidAddress(_) => "invalid_address",
            Error::InvalidUtf8(_) => "invalid_utf8",
            Error::InvalidMode(_) => "invalid_mode",
            Error::TooMany { .. } => "too_many",
            Error::TooLong { .. } => "too_long",
            Error::NotCcp => "not_ccp",
            Error::InvalidCondition => "invalid_condition",
        }
    }

    /// The payload field at fault; `None` for the Prepare's own fields.
    pub const fn field(&self) -> Option<Field> {
        match *self {
            Error::Oer(field, _)
            | Error::NonCanonicalVarUint(field)
            | Error::InvalidAddress(field)
            | Error::InvalidUtf8(field)
            | Error::TooMany { field, .. }
            | Error::TooLong { field, .. } => Some(field),
            Error::InvalidMode(_) => Some(Field::Mode),
            Error::NotCcp | Error::InvalidCondition => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Oer(field, e) => write!(f, "{field}: {}", e.describe()),
            Error::NonCanonicalVarUint(field) => {
                write!(f, "{field}: a var-uint with a redundant leading zero")
            }
            Error::InvalidAddress(field) => write!(f, "{field}: not a valid ILP address"),
            Error::InvalidUtf8(field) => write!(f, "{field}: not UTF-8"),
            Error::InvalidMode(mode) => write!(f, "mode: {mode} is neither 0 (IDLE) nor 1 (SYNC)"),
            Error::TooMany { field, max } => write!(f, "{field}: more than {max}"),
            Error::TooLong { field, max } => write!(f, "{field}: longer than {max} bytes"),
            Error::NotCcp => {
                f.write_str("destination: neither peer.route.control nor peer.route.update")
            }
            Error::InvalidCondition => {
                f.write_str("executionCondition: not the peer-protocol condition")
            }
        }
    }
}

impl std::error::Error for Error {}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// A routing table id: a UUID, shown `8-4-4-4-12` in lowercase hex. Ours will be a random
/// UUID made at start (JS makes one per process, interledger-rs a random id per process).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RoutingTableId(pub [u8; ROUTING_TABLE_ID_LEN]);

impl fmt::Display for RoutingTableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RoutingTableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoutingTableId({self})")
    }
}

/// What a Route Control Request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Stop sending me updates. interledger-rs does not act on it; we will stop, as JS does.
    Idle = 0,
    /// Send me updates.
    Sync = 1,
}

impl Mode {
    /// The mode of a wire byte; `None` for anything but 0 and 1.
    pub const fn from_byte(byte: u8) -> Option<Mode> {
        match byte {
            0 => Some(Mode::Idle),
            1 => Some(Mode::Sync),
            _ => None,
        }
    }

    /// The wire byte.
    pub const fn as_byte(self) -> u8 {
        self as u8
    }
}

/// The payload of a Prepare to `peer.route.control`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteControlRequest {
    /// IDLE or SYNC.
    pub mode: Mode,
    /// The receiver's routing table id as the requester last saw it; all zero at start.
    pub last_known_routing_table_id: RoutingTableId,
    /// The last epoch the requester applied from that table.
    pub last_known_epoch: u32,
    /// Unused by both references; at most [`FEATURES_MAX`] of [`FEATURE_LEN_MAX`] bytes each.
    pub features: Vec<String>,
}

/// The payload of a Prepare to `peer.route.update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteUpdateRequest {
    /// The speaker's routing table id.
    pub routing_table_id: RoutingTableId,
    /// The speaker's current epoch.
    pub current_epoch_index: u32,
    /// The first epoch this update covers.
    pub from_epoch_index: u32,
    /// The epoch the receiver is at after applying it.
    pub to_epoch_index: u32,
    /// How long these routes stay valid without a refresh (`holdDownTime`). Our choice: the
    /// receiver expires the speaker's learned routes at now + this unless refreshed (JS records
    /// it and never reads it; interledger-rs ignores it).
    pub hold_down_time_ms: u32,
    /// The speaker's ILP address.
    pub speaker: String,
    /// Routes added or changed, at most [`ROUTES_PER_UPDATE_MAX`].
    pub new_routes: Vec<Route>,
    /// Prefixes withdrawn, at most [`WITHDRAWN_ROUTES_PER_UPDATE_MAX`].
    pub withdrawn_routes: Vec<String>,
}

/// One route of an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// An ILP address, or a scheme on its own (`g`).
    pub prefix: String,
    /// The ILP addresses of the hops after the speaker (the speaker first when relayed), at
    /// most [`PATH_LEN_MAX`].
    pub path: Vec<String>,
    /// Opaque to receivers.
    pub auth: [u8; AUTH_LEN],
    /// At most [`PROPS_PER_ROUTE_MAX`].
    pub props: Vec<Prop>,
}

/// A route property. No id is defined; they are carried, not interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prop {
    /// The `meta` byte.
    pub flags: PropFlags,
    /// The property id.
    pub id: u16,
    /// At most [`PROP_VALUE_LEN_MAX`] bytes; UTF-8 if the flags say so (not checked).
    pub value: Vec<u8>,
}

/// A prop's `meta` byte, kept whole: the four flags below and four undefined low bits.
///
/// The encoder writes it as given, as interledger-rs does. JS sets the transitive bit on every
/// non-optional prop, and the partial bit only on optional transitive ones; the vectors carry
/// what JS wrote, and they re-encode unchanged. We originate no props.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PropFlags(pub u8);

impl PropFlags {
    /// The receiver may ignore a prop it does not know.
    pub const OPTIONAL: u8 = 0x80;
    /// The prop is passed on when the route is relayed.
    pub const TRANSITIVE: u8 = 0x40;
    /// Some connector on the path did not understand the prop.
    pub const PARTIAL: u8 = 0x20;
    /// The value is UTF-8 text.
    pub const UTF8: u8 = 0x10;

    /// The optional bit.
    pub const fn is_optional(self) -> bool {
        self.0 & Self::OPTIONAL != 0
    }

    /// The transitive bit.
    pub const fn is_transitive(self) -> bool {
        self.0 & Self::TRANSITIVE != 0
    }

    /// The partial bit.
    pub const fn is_partial(self) -> bool {
        self.0 & Self::PARTIAL != 0
    }

    /// The UTF-8 bit.
    pub const fn is_utf8(self) -> bool {
        self.0 & Self::UTF8 != 0
    }
}

/// A CCP request, checked and decoded from its Prepare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `peer.route.control`.
    Control(RouteControlRequest),
    /// `peer.route.update`.
    Update(RouteUpdateRequest),
}

impl Request {
    /// Checks the destination (exactly `peer.route.control` or `peer.route.update`) and the
    /// condition, then decodes the data. The expiry is not looked at: the caller answers an
    /// expired request R02. The amount is not looked at either (both references send 0 and
    /// neither checks it).
    pub fn from_prepare<T: AsRef<[u8]>>(prepare: &Prepare<T>) -> Result<Request, Error> {
        let destination = prepare.destination().as_bytes();
        let control = destination == CCP_CONTROL_DESTINATION;
        if !control && destination != CCP_UPDATE_DESTINATION {
            return Err(Error::NotCcp);
        }
        if *prepare.execution_condition() != PEER_PROTOCOL_CONDITION {
            return Err(Error::InvalidCondition);
        }
        if control {
            RouteControlRequest::decode(prepare.data()).map(Request::Control)
        } else {
            RouteUpdateRequest::decode(prepare.data()).map(Request::Update)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

impl RouteControlRequest {
    /// Decodes a Route Control Request payload (bytes after its last field are ignored).
    pub fn decode(payload: &[u8]) -> Result<Self, Error> {
        let mut d = Decoder::new(payload);
        let mode = d.u8(Field::Mode)?;
        // JS takes any byte; interledger-rs and the vectors refuse all but 0 and 1.
        let mode = Mode::from_byte(mode).ok_or(Error::InvalidMode(mode))?;
        let last_known_routing_table_id = RoutingTableId(d.array(Field::LastKnownRoutingTableId)?);
        let last_known_epoch = d.u32(Field::LastKnownEpoch)?;
        let count = d.count(Field::Features, FEATURES_MAX)?;
        let mut features = Vec::with_capacity(d.room(count, FEATURE_LEN_MIN));
        for _ in 0..count {
            features.push(d.utf8(Field::Feature, FEATURE_LEN_MAX)?);
        }
        Ok(RouteControlRequest {
            mode,
            last_known_routing_table_id,
            last_known_epoch,
            features,
        })
    }
}

impl RouteUpdateRequest {
    /// Decodes a Route Update Request payload (bytes after its last field are ignored).
    pub fn decode(payload: &[u8]) -> Result<Self, Error> {
        let mut d = Decoder::new(payload);
        let routing_table_id = RoutingTableId(d.array(Field::RoutingTableId)?);
        let current_epoch_index = d.u32(Field::CurrentEpochIndex)?;
        let from_epoch_index = d.u32(Field::FromEpochIndex)?;
        let to_epoch_index = d.u32(Field::ToEpochIndex)?;
        let hold_down_time_ms = d.u32(Field::HoldDownTime)?;
        // interledger-rs and the vectors check the speaker; JS does not.
        let speaker = d.address(Field::Speaker)?;
        let count = d.count(Field::NewRoutes, ROUTES_PER_UPDATE_MAX)?;
        let mut new_routes = Vec::with_capacity(d.room(count, ROUTE_LEN_MIN));
        for _ in 0..count {
            new_routes.push(d.route()?);
        }
        let count = d.count(Field::WithdrawnRoutes, WITHDRAWN_ROUTES_PER_UPDATE_MAX)?;
        let mut withdrawn_routes = Vec::with_capacity(d.room(count, PREFIX_LEN_MIN));
        for _ in 0..count {
            withdrawn_routes.push(d.prefix(Field::WithdrawnRoute)?);
        }
        Ok(RouteUpdateRequest {
            routing_table_id,
            current_epoch_index,
            from_epoch_index,
            to_epoch_index,
            hold_down_time_ms,
            speaker,
            new_routes,
            withdrawn_routes,
        })
    }
}

/// An [`oer::Reader`] whose every refusal names the field.
struct Decoder<'a> {
    buf: &'a [u8],
    reader: Reader<'a>,
}

impl<'a> Decoder<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Decoder {
            buf,
            reader: Reader::new(buf, 0),
        }
    }

    fn fixed(&mut self, field: Field, n: usize) -> Result<&'a [u8], Error> {
        let range = self.reader.fixed(n).map_err(|e| Error::Oer(field, e))?;
        Ok(&self.buf[range])
    }

    fn array<const N: usize>(&mut self, field: Field) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.fixed(field, N)?);
        Ok(out)
    }

    fn u8(&mut self, field: Field) -> Result<u8, Error> {
        self.reader.u8().map_err(|e| Error::Oer(field, e))
    }

    fn u16(&mut self, field: Field) -> Result<u16, Error> {
        self.array(field).map(u16::from_be_bytes)
    }

    fn u32(&mut self, field: Field) -> Result<u32, Error> {
        self.array(field).map(u32::from_be_bytes)
    }

    /// A var-uint count in its shortest form, at most `max`.
    fn count(&mut self, field: Field, max: usize) -> Result<usize, Error> {
        let start = self.reader.pos();
        let count = self.reader.var_uint().map_err(|e| Error::Oer(field, e))?;
        if self.reader.pos() - start != oer::var_uint_len(count) {
            return Err(Error::NonCanonicalVarUint(field));
        }
        if count > max as u64 {
            return Err(Error::TooMany { field, max });
        }
        // Cannot truncate: count ≤ max.
        Ok(count as usize)
    }

    /// The capacity to reserve for `count` entries of at least `entry_len_min` bytes each: no
    /// more than the bytes left could hold, whatever the count says.
    fn room(&self, count: usize, entry_len_min: usize) -> usize {
        count.min(self.reader.remaining() / entry_len_min)
    }

    fn octets(&mut self, field: Field) -> Result<&'a [u8], Error> {
        let range = self.reader.var_octets().map_err(|e| Error::Oer(field, e))?;
        Ok(&self.buf[range])
    }

    /// A var-octet-string of at most `len_max` bytes (checked before the length is compared
    /// with what remains).
    fn octets_max(&mut self, field: Field, len_max: usize) -> Result<&'a [u8], Error> {
        let len = self
            .reader
            .clone()
            .length()
            .map_err(|e| Error::Oer(field, e))?;
        if len > len_max as u64 {
            return Err(Error::TooLong {
                field,
                max: len_max,
            });
        }
        self.octets(field)
    }

    fn utf8(&mut self, field: Field, len_max: usize) -> Result<String, Error> {
        let bytes = self.octets_max(field, len_max)?;
        match core::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(Error::InvalidUtf8(field)),
        }
    }

    fn address(&mut self, field: Field) -> Result<String, Error> {
        let bytes = self.octets(field)?;
        check_address(bytes).map_err(|_| Error::InvalidAddress(field))?;
        Ok(ascii(bytes))
    }

    fn prefix(&mut self, field: Field) -> Result<String, Error> {
        let bytes = self.octets(field)?;
        if !is_route_prefix(bytes) {
            return Err(Error::InvalidAddress(field));
        }
        Ok(ascii(bytes))
    }

    fn route(&mut self) -> Result<Route, Error> {
        let prefix = self.prefix(Field::Prefix)?;
        let count = self.count(Field::Path, PATH_LEN_MAX)?;
        let mut path = Vec::with_capacity(self.room(count, HOP_LEN_MIN));
        for _ in 0..count {
            path.push(self.address(Field::PathHop)?);
        }
        let auth = self.array(Field::Auth)?;
        let count = self.count(Field::Props, PROPS_PER_ROUTE_MAX)?;
        let mut props = Vec::with_capacity(self.room(count, PROP_LEN_MIN));
        for _ in 0..count {
            let flags = PropFlags(self.u8(Field::PropMeta)?);
            let id = self.u16(Field::PropId)?;
            let value = self
                .octets_max(Field::PropValue, PROP_VALUE_LEN_MAX)?
                .to_vec();
            props.push(Prop { flags, id, value });
        }
        Ok(Route {
            prefix,
            path,
            auth,
            props,
        })
    }
}

/// Bytes already checked to be an address or a prefix, hence ASCII, as a `String`.
fn ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

impl RouteControlRequest {
    /// Bytes that [`Self::emit`] writes.
    pub fn encoded_len(&self) -> usize {
        1 + ROUTING_TABLE_ID_LEN
            + 4
            + oer::var_uint_len(self.features.len() as u64)
            + self
                .features
                .iter()
                .map(|f| oer::var_octets_len(f.len()))
                .sum::<usize>()
    }

    /// Writes the payload at the start of `buf` and returns its length, [`Self::encoded_len`].
    ///
    /// # Panics
    /// If `buf` is shorter than [`Self::encoded_len`]. In debug builds, also if the value is
    /// one [`Self::decode`] would refuse (more features than our limit, say): a caller bug.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.write(buf);
        debug_assert_eq!(Self::decode(&buf[..len]).as_ref(), Ok(self));
        len
    }

    /// The payload in a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.encoded_len()];
        let len = self.emit(&mut out);
        debug_assert_eq!(len, out.len());
        out
    }

    fn write(&self, buf: &mut [u8]) -> usize {
        let mut w = Writer::new(buf);
        w.u8(self.mode.as_byte());
        w.bytes(&self.last_known_routing_table_id.0);
        w.u32(self.last_known_epoch);
        w.var_uint(self.features.len() as u64);
        for feature in &self.features {
            w.var_octets(feature.as_bytes());
        }
        w.pos()
    }
}

impl RouteUpdateRequest {
    /// Bytes that [`Self::emit`] writes.
    pub fn encoded_len(&self) -> usize {
        ROUTING_TABLE_ID_LEN
            + 4 * 4
            + oer::var_octets_len(self.speaker.len())
            + oer::var_uint_len(self.new_routes.len() as u64)
            + self
                .new_routes
                .iter()
                .map(Route::encoded_len)
                .sum::<usize>()
            + oer::var_uint_len(self.withdrawn_routes.len() as u64)
            + self
                .withdrawn_routes
                .iter()
                .map(|p| oer::var_octets_len(p.len()))
                .sum::<usize>()
    }

    /// Writes the payload at the start of `buf` and returns its length, [`Self::encoded_len`].
    ///
    /// # Panics
    /// If `buf` is shorter than [`Self::encoded_len`]. In debug builds, also if the value is
    /// one [`Self::decode`] would refuse (a speaker that is not an address, a path longer
    /// than our limit, …): a caller bug.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.write(buf);
        debug_assert_eq!(Self::decode(&buf[..len]).as_ref(), Ok(self));
        len
    }

    /// The payload in a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.encoded_len()];
        let len = self.emit(&mut out);
        debug_assert_eq!(len, out.len());
        out
    }

    fn write(&self, buf: &mut [u8]) -> usize {
        let mut w = Writer::new(buf);
        w.bytes(&self.routing_table_id.0);
        w.u32(self.current_epoch_index);
        w.u32(self.from_epoch_index);
        w.u32(self.to_epoch_index);
        w.u32(self.hold_down_time_ms);
        w.var_octets(self.speaker.as_bytes());
        w.var_uint(self.new_routes.len() as u64);
        for route in &self.new_routes {
            route.write(&mut w);
        }
        w.var_uint(self.withdrawn_routes.len() as u64);
        for prefix in &self.withdrawn_routes {
            w.var_octets(prefix.as_bytes());
        }
        w.pos()
    }
}

impl Route {
    /// Bytes this route takes in an update.
    pub fn encoded_len(&self) -> usize {
        oer::var_octets_len(self.prefix.len())
            + oer::var_uint_len(self.path.len() as u64)
            + self
                .path
                .iter()
                .map(|hop| oer::var_octets_len(hop.len()))
                .sum::<usize>()
            + AUTH_LEN
            + oer::var_uint_len(self.props.len() as u64)
            + self
                .props
                .iter()
                .map(|p| 1 + 2 + oer::var_octets_len(p.value.len()))
                .sum::<usize>()
    }

    fn write(&self, w: &mut Writer<'_>) {
        w.var_octets(self.prefix.as_bytes());
        w.var_uint(self.path.len() as u64);
        for hop in &self.path {
            w.var_octets(hop.as_bytes());
        }
        w.bytes(&self.auth);
        w.var_uint(self.props.len() as u64);
        for prop in &self.props {
            w.u8(prop.flags.0);
            w.bytes(&prop.id.to_be_bytes());
            w.var_octets(&prop.value);
        }
    }
}

#[cfg(test)]
#[path = "ccp_tests.rs"]
mod tests;
