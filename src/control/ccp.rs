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
mod tests {
    use super::*;
    use crate::wire::{test_hex as unhex, FulfillRepr, Packet};
    use serde_json::{json, Value};

    fn vectors() -> Vec<Value> {
        let all: Value =
            serde_json::from_str(include_str!("../../tests/vectors/ccp.json")).expect("JSON");
        all["vectors"].as_array().expect("a vectors array").clone()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A request in the vectors' JSON form (`decoded.ccp`).
    fn json_of(request: &Request) -> Value {
        match request {
            Request::Control(c) => json!({
                "mode": c.mode.as_byte(),
                "lastKnownRoutingTableId": c.last_known_routing_table_id.to_string(),
                "lastKnownEpoch": c.last_known_epoch,
                "features": c.features,
            }),
            Request::Update(u) => json!({
                "routingTableId": u.routing_table_id.to_string(),
                "currentEpochIndex": u.current_epoch_index,
                "fromEpochIndex": u.from_epoch_index,
                "toEpochIndex": u.to_epoch_index,
                "holdDownTime": u.hold_down_time_ms,
                "speaker": u.speaker,
                "newRoutes": u.new_routes.iter().map(|r| json!({
                    "prefix": r.prefix,
                    "path": r.path,
                    "auth": hex(&r.auth),
                    "props": r.props.iter().map(|p| json!({
                        "isOptional": p.flags.is_optional(),
                        "isTransitive": p.flags.is_transitive(),
                        "isPartial": p.flags.is_partial(),
                        "isUtf8": p.flags.is_utf8(),
                        "id": p.id,
                        "value": if p.flags.is_utf8() {
                            String::from_utf8(p.value.clone()).expect("UTF-8")
                        } else {
                            hex(&p.value)
                        },
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "withdrawnRoutes": u.withdrawn_routes,
            }),
        }
    }

    fn to_bytes(request: &Request) -> Vec<u8> {
        match request {
            Request::Control(c) => c.to_bytes(),
            Request::Update(u) => u.to_bytes(),
        }
    }

    /// Both decoders on a payload, as results that compare.
    fn decode_both(payload: &[u8]) -> [Result<Request, Error>; 2] {
        [
            RouteControlRequest::decode(payload).map(Request::Control),
            RouteUpdateRequest::decode(payload).map(Request::Update),
        ]
    }

    /// The valid CCP payloads of the vectors.
    fn valid_payloads() -> Vec<(String, &'static str, Vec<u8>)> {
        vectors()
            .iter()
            .filter(|v| v["valid"] == true && v["payload_hex"].is_string())
            .map(|v| {
                let kind = match v["kind"].as_str() {
                    Some("ccp_route_control") => "control",
                    _ => "update",
                };
                let name = v["name"].as_str().unwrap().to_owned();
                (name, kind, unhex(v["payload_hex"].as_str().unwrap()))
            })
            .collect()
    }

    fn decode_kind(kind: &str, payload: &[u8]) -> Result<Request, Error> {
        if kind == "control" {
            RouteControlRequest::decode(payload).map(Request::Control)
        } else {
            RouteUpdateRequest::decode(payload).map(Request::Update)
        }
    }

    /// An update's payload as written, without the emitter's debug check, for values that
    /// break a rule.
    fn raw_update(update: &RouteUpdateRequest) -> Vec<u8> {
        let mut out = vec![0u8; update.encoded_len()];
        let len = update.write(&mut out);
        assert_eq!(len, out.len());
        out
    }

    fn raw_control(control: &RouteControlRequest) -> Vec<u8> {
        let mut out = vec![0u8; control.encoded_len()];
        let len = control.write(&mut out);
        assert_eq!(len, out.len());
        out
    }

    fn route(prefix: &str) -> Route {
        Route {
            prefix: prefix.into(),
            path: vec!["g.beta".into()],
            auth: [7; AUTH_LEN],
            props: vec![],
        }
    }

    fn update(new_routes: Vec<Route>, withdrawn: &[&str]) -> RouteUpdateRequest {
        RouteUpdateRequest {
            routing_table_id: RoutingTableId([0x21; ROUTING_TABLE_ID_LEN]),
            current_epoch_index: 9,
            from_epoch_index: 3,
            to_epoch_index: 9,
            hold_down_time_ms: 45_000,
            speaker: "g.alpha".into(),
            new_routes,
            withdrawn_routes: withdrawn.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn control(features: Vec<String>) -> RouteControlRequest {
        RouteControlRequest {
            mode: Mode::Sync,
            last_known_routing_table_id: RoutingTableId([0x3b; ROUTING_TABLE_ID_LEN]),
            last_known_epoch: 52,
            features,
        }
    }

    #[test]
    fn every_vector_decodes_to_its_fields_and_reencodes_byte_for_byte() {
        let mut checked = 0;
        for v in vectors() {
            let name = v["name"].as_str().unwrap();
            let bytes = unhex(v["hex"].as_str().unwrap());
            if v["kind"] == "ccp_response" {
                assert_eq!(&bytes[..], &CCP_RESPONSE[..], "{name}");
                checked += 1;
                continue;
            }
            // Every CCP vector is a well-formed Prepare; the CCP rules apply to its data.
            let prepare = Prepare::new_checked(&bytes[..]).expect(name);
            let decoded = Request::from_prepare(&prepare);
            if v["valid"] == true {
                let request = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(json_of(&request), v["decoded"]["ccp"], "{name}");
                let payload = unhex(v["payload_hex"].as_str().unwrap());
                assert_eq!(prepare.data(), &payload[..], "{name}");
                assert_eq!(to_bytes(&request), payload, "{name}");
                let kind_matches = matches!(
                    (&request, v["kind"].as_str().unwrap()),
                    (Request::Control(_), "ccp_route_control")
                        | (Request::Update(_), "ccp_route_update")
                );
                assert!(kind_matches, "{name}");
            } else {
                let error = decoded.expect_err(name);
                assert_eq!(
                    error.as_str(),
                    v["error"].as_str().unwrap(),
                    "{name}: {error}"
                );
            }
            checked += 1;
        }
        assert_eq!(checked, 11);
    }

    #[test]
    fn the_invalid_vectors_name_their_field() {
        let errors: Vec<(String, Error)> = vectors()
            .iter()
            .filter(|v| v["valid"] == false)
            .map(|v| {
                let bytes = unhex(v["hex"].as_str().unwrap());
                let prepare = Prepare::new_checked(&bytes[..]).unwrap();
                let error = Request::from_prepare(&prepare).unwrap_err();
                (v["name"].as_str().unwrap().to_owned(), error)
            })
            .collect();
        let expected = [
            ("route_control_wrong_condition", Error::InvalidCondition),
            ("route_control_mode_2", Error::InvalidMode(2)),
            (
                "route_control_truncated",
                Error::Oer(Field::LastKnownRoutingTableId, wire::Error::Truncated),
            ),
            (
                "route_update_truncated",
                Error::Oer(Field::Auth, wire::Error::Truncated),
            ),
            (
                "route_update_invalid_speaker",
                Error::InvalidAddress(Field::Speaker),
            ),
        ];
        assert_eq!(errors.len(), expected.len());
        for ((name, error), (want_name, want)) in errors.iter().zip(expected) {
            assert_eq!((name.as_str(), *error), (want_name, want));
        }
        assert_eq!(
            Error::InvalidAddress(Field::Speaker).to_string(),
            "speaker: not a valid ILP address"
        );
        assert_eq!(
            Error::Oer(Field::Auth, wire::Error::Truncated).to_string(),
            "newRoutes[].auth: the input ends inside a fixed-size field or a length determinant"
        );
    }

    #[test]
    fn truncation_at_every_offset_is_refused() {
        for (name, kind, payload) in valid_payloads() {
            for len in 0..payload.len() {
                let error = decode_kind(kind, &payload[..len])
                    .expect_err(&format!("{name} cut to {len} bytes"));
                let category = error.as_str();
                assert!(
                    category == "truncated" || category == "length_overflow",
                    "{name} cut to {len} bytes: {error}"
                );
                // The other decoder never panics on it either.
                let _ = decode_both(&payload[..len]);
            }
        }
    }

    #[test]
    fn changed_bytes_never_panic_and_what_is_accepted_reencodes_to_its_input() {
        for (name, _, payload) in valid_payloads() {
            // Every byte of the small ones; the 130-route update is covered by the fuzz target.
            if payload.len() > 512 {
                continue;
            }
            for at in 0..payload.len() {
                for value in [0x00, 0x01, 0x7f, 0x80, 0x81, 0xff, payload[at] ^ 0x20] {
                    let mut changed = payload.clone();
                    changed[at] = value;
                    for request in decode_both(&changed).into_iter().flatten() {
                        let again = to_bytes(&request);
                        assert_eq!(&changed[..again.len()], &again[..], "{name} [{at}]={value}");
                    }
                }
            }
        }
    }

    #[test]
    fn bytes_after_the_last_field_are_ignored_and_never_emitted() {
        for (name, kind, payload) in valid_payloads() {
            let mut longer = payload.clone();
            longer.extend_from_slice(&[0x01, 0x00, 0xff]);
            let request = decode_kind(kind, &longer).expect(&name);
            assert_eq!(Ok(&request), decode_kind(kind, &payload).as_ref(), "{name}");
            assert_eq!(to_bytes(&request), payload, "{name}");
        }
    }

    #[test]
    fn values_round_trip_through_emit() {
        let mut r = route("g.beta.child");
        r.path = vec!["g.beta".into(), "test.gamma".into()];
        r.props = vec![
            Prop {
                flags: PropFlags(PropFlags::OPTIONAL | PropFlags::TRANSITIVE | PropFlags::UTF8),
                id: 1,
                value: b"hello".to_vec(),
            },
            Prop {
                flags: PropFlags(0x4f),
                id: 0xfffe,
                value: vec![0; 200],
            },
        ];
        let u = update(vec![r, route("g")], &["g.gamma", "test"]);
        let bytes = u.to_bytes();
        assert_eq!(bytes.len(), u.encoded_len());
        assert_eq!(RouteUpdateRequest::decode(&bytes), Ok(u.clone()));
        let mut buf = vec![0xa5; bytes.len() + 8];
        assert_eq!(u.emit(&mut buf), bytes.len());
        assert_eq!(&buf[..bytes.len()], &bytes[..]);
        assert!(buf[bytes.len()..].iter().all(|&b| b == 0xa5));

        let c = control(vec!["foo".into(), "é".into(), String::new()]);
        let bytes = c.to_bytes();
        assert_eq!(bytes.len(), c.encoded_len());
        assert_eq!(RouteControlRequest::decode(&bytes), Ok(c));
    }

    #[test]
    fn the_prop_meta_byte_is_kept_whole() {
        let mut r = route("g.beta");
        r.props = vec![Prop {
            flags: PropFlags(0x2f),
            id: 7,
            value: vec![],
        }];
        let bytes = update(vec![r], &[]).to_bytes();
        let decoded = RouteUpdateRequest::decode(&bytes).unwrap();
        let flags = decoded.new_routes[0].props[0].flags;
        assert_eq!(flags, PropFlags(0x2f));
        assert!(flags.is_partial() && !flags.is_optional() && !flags.is_transitive());
        assert!(!flags.is_utf8());
    }

    #[test]
    fn prefixes_are_addresses_or_a_scheme_alone_and_hops_are_addresses() {
        for prefix in ["g", "test", "private", "example", "g.a", "test.b-c_d~e"] {
            let bytes = update(vec![route(prefix)], &[prefix]).to_bytes();
            assert!(RouteUpdateRequest::decode(&bytes).is_ok(), "{prefix}");
        }
        for prefix in ["", "h", "g.", ".g", "g..a", "privates", "g.a b", "G"] {
            let bytes = raw_update(&update(vec![route(prefix)], &[]));
            assert_eq!(
                RouteUpdateRequest::decode(&bytes),
                Err(Error::InvalidAddress(Field::Prefix)),
                "{prefix:?}"
            );
            let bytes = raw_update(&update(vec![], &[prefix]));
            assert_eq!(
                RouteUpdateRequest::decode(&bytes),
                Err(Error::InvalidAddress(Field::WithdrawnRoute)),
                "{prefix:?}"
            );
        }
        let mut bare_hop = route("g.beta");
        bare_hop.path = vec!["g".into()];
        assert_eq!(
            RouteUpdateRequest::decode(&raw_update(&update(vec![bare_hop], &[]))),
            Err(Error::InvalidAddress(Field::PathHop))
        );
        let mut speaker = update(vec![], &[]);
        speaker.speaker = "g".into();
        assert_eq!(
            RouteUpdateRequest::decode(&raw_update(&speaker)),
            Err(Error::InvalidAddress(Field::Speaker))
        );
        let long = format!("g.{}", "a".repeat(wire::ADDRESS_LEN_MAX - 2));
        assert!(RouteUpdateRequest::decode(&update(vec![route(&long)], &[]).to_bytes()).is_ok());
        let too_long = format!("{long}a");
        assert_eq!(
            RouteUpdateRequest::decode(&raw_update(&update(vec![route(&too_long)], &[]))),
            Err(Error::InvalidAddress(Field::Prefix))
        );
    }

    #[test]
    fn our_limits_are_enforced_at_their_edge() {
        // Path.
        let mut r = route("g.beta");
        r.path = vec!["g.hop".into(); PATH_LEN_MAX];
        assert!(RouteUpdateRequest::decode(&update(vec![r.clone()], &[]).to_bytes()).is_ok());
        r.path.push("g.hop".into());
        let over = Error::TooMany {
            field: Field::Path,
            max: PATH_LEN_MAX,
        };
        assert_eq!(
            RouteUpdateRequest::decode(&raw_update(&update(vec![r], &[]))),
            Err(over)
        );
        // Props, and the size of one.
        let prop = Prop {
            flags: PropFlags(PropFlags::OPTIONAL),
            id: 1,
            value: vec![1; PROP_VALUE_LEN_MAX],
        };
        let mut r = route("g.beta");
        r.props = vec![prop.clone(); PROPS_PER_ROUTE_MAX];
        assert!(RouteUpdateRequest::decode(&update(vec![r.clone()], &[]).to_bytes()).is_ok());
        r.props.push(prop.clone());
        let over = Error::TooMany {
            field: Field::Props,
            max: PROPS_PER_ROUTE_MAX,
        };
        assert_eq!(
            RouteUpdateRequest::decode(&raw_update(&update(vec![r], &[]))),
            Err(over)
        );
        let mut r = route("g.beta");
        let mut big = prop;
        big.value.push(1);
        r.props = vec![big];
        let over = Error::TooLong {
            field: Field::PropValue,
            max: PROP_VALUE_LEN_MAX,
        };
        assert_eq!(
            RouteUpdateRequest::decode(&raw_update(&update(vec![r], &[]))),
            Err(over)
        );
        // Routes and withdrawals per update.
        let full = update(vec![route("g.x"); ROUTES_PER_UPDATE_MAX], &[]);
        assert!(RouteUpdateRequest::decode(&full.to_bytes()).is_ok());
        let mut over = full;
        over.new_routes.push(route("g.x"));
        assert_eq!(
            RouteUpdateRequest::decode(&raw_update(&over)),
            Err(Error::TooMany {
                field: Field::NewRoutes,
                max: ROUTES_PER_UPDATE_MAX
            })
        );
        let full = update(vec![], &["g"; WITHDRAWN_ROUTES_PER_UPDATE_MAX]);
        assert!(RouteUpdateRequest::decode(&full.to_bytes()).is_ok());
        let mut over = full;
        over.withdrawn_routes.push("g".into());
        assert_eq!(
            RouteUpdateRequest::decode(&raw_update(&over)),
            Err(Error::TooMany {
                field: Field::WithdrawnRoutes,
                max: WITHDRAWN_ROUTES_PER_UPDATE_MAX
            })
        );
        // Features, and the size of one.
        let full = control(vec!["f".repeat(FEATURE_LEN_MAX); FEATURES_MAX]);
        assert!(RouteControlRequest::decode(&full.to_bytes()).is_ok());
        let mut over = full.clone();
        over.features.push("f".into());
        assert_eq!(
            RouteControlRequest::decode(&raw_control(&over)),
            Err(Error::TooMany {
                field: Field::Features,
                max: FEATURES_MAX
            })
        );
        let mut over = full;
        over.features[3].push('f');
        assert_eq!(
            RouteControlRequest::decode(&raw_control(&over)),
            Err(Error::TooLong {
                field: Field::Feature,
                max: FEATURE_LEN_MAX
            })
        );
    }

    #[test]
    fn counts_beyond_the_bytes_left_reserve_only_what_the_bytes_could_hold() {
        // A heartbeat whose route count is patched to 800, with one route there.
        let heartbeat = raw_update(&update(vec![], &[]));
        let at = heartbeat.len() - 4;
        assert_eq!(&heartbeat[at..], &[0x01, 0x00, 0x01, 0x00]);
        let one = raw_update(&update(vec![route("g.x")], &[]));
        let mut bytes = heartbeat[..at].to_vec();
        bytes.extend_from_slice(&[0x02, 0x03, 0x20]);
        bytes.extend_from_slice(&one[at + 2..one.len() - 2]);
        assert_eq!(
            RouteUpdateRequest::decode(&bytes),
            Err(Error::Oer(Field::Prefix, wire::Error::Truncated))
        );
        assert_eq!(Decoder::new(&[0; 100]).room(800, ROUTE_LEN_MIN), 2);
        assert_eq!(Decoder::new(&[0; 100]).room(1, ROUTE_LEN_MIN), 1);
        assert_eq!(Decoder::new(&[]).room(16_384, PREFIX_LEN_MIN), 0);
        // A count over the limit is refused as such, whatever follows.
        let mut bytes = heartbeat[..at].to_vec();
        bytes.extend_from_slice(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            RouteUpdateRequest::decode(&bytes),
            Err(Error::TooMany {
                field: Field::NewRoutes,
                max: ROUTES_PER_UPDATE_MAX
            })
        );
        // Withdrawals: 3 announced, one there.
        let mut bytes = heartbeat[..at + 2].to_vec();
        bytes.extend_from_slice(&[0x01, 0x03, 0x01, 0x67]);
        assert_eq!(
            RouteUpdateRequest::decode(&bytes),
            Err(Error::Oer(Field::WithdrawnRoute, wire::Error::Truncated))
        );
    }

    #[test]
    fn non_canonical_forms_are_refused() {
        let start = raw_control(&control(vec![]));
        let head = &start[..start.len() - 2];
        let with = |tail: &[u8]| [head, tail].concat();
        let cases: [(&[u8], Error); 7] = [
            (
                &[0x02, 0x00, 0x00],
                Error::NonCanonicalVarUint(Field::Features),
            ),
            (
                &[0x00],
                Error::Oer(Field::Features, wire::Error::InvalidVarUint),
            ),
            (
                &[0x09, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                Error::Oer(Field::Features, wire::Error::InvalidVarUint),
            ),
            (
                &[0x81, 0x01, 0x00],
                Error::Oer(Field::Features, wire::Error::NonCanonicalLength),
            ),
            (
                &[0x80],
                Error::Oer(Field::Features, wire::Error::IndefiniteLength),
            ),
            (
                &[0x01, 0x01, 0x81, 0x03, b'f', b'o', b'o'],
                Error::Oer(Field::Feature, wire::Error::NonCanonicalLength),
            ),
            (
                &[0x01, 0x01, 0x02, 0xc3, 0x28],
                Error::InvalidUtf8(Field::Feature),
            ),
        ];
        for (tail, error) in cases {
            assert_eq!(
                RouteControlRequest::decode(&with(tail)),
                Err(error),
                "{tail:02x?}"
            );
        }
        assert_eq!(
            RouteControlRequest::decode(&with(&[0x01, 0x00])),
            Ok(control(vec![]))
        );
        // A speaker with a long-form length.
        let heartbeat = raw_update(&update(vec![], &[]));
        let mut bytes = heartbeat[..32].to_vec();
        bytes.extend_from_slice(&[0x81, 0x07]);
        bytes.extend_from_slice(&heartbeat[33..]);
        assert_eq!(
            RouteUpdateRequest::decode(&bytes),
            Err(Error::Oer(Field::Speaker, wire::Error::NonCanonicalLength))
        );
    }

    #[test]
    fn mode_and_routing_table_id() {
        let mut bytes = raw_control(&control(vec![]));
        for (byte, mode) in [(0, Ok(Mode::Idle)), (1, Ok(Mode::Sync))] {
            bytes[0] = byte;
            assert_eq!(RouteControlRequest::decode(&bytes).map(|c| c.mode), mode);
        }
        for byte in [2, 0x80, 0xff] {
            bytes[0] = byte;
            assert_eq!(
                RouteControlRequest::decode(&bytes),
                Err(Error::InvalidMode(byte))
            );
        }
        let id = RoutingTableId([
            0x3b, 0x06, 0x98, 0x22, 0xa7, 0x54, 0x4e, 0x44, 0x8a, 0x60, 0x0f, 0x9f, 0x70, 0x84,
            0x14, 0x4d,
        ]);
        assert_eq!(id.to_string(), "3b069822-a754-4e44-8a60-0f9f7084144d");
        assert_eq!(
            RoutingTableId::default().to_string(),
            "00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn the_peer_protocol_constants() {
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(PEER_PROTOCOL_FULFILLMENT).into();
        assert_eq!(digest, PEER_PROTOCOL_CONDITION);
        let repr = FulfillRepr {
            fulfillment: &PEER_PROTOCOL_FULFILLMENT,
            data: b"",
        };
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut out);
        assert_eq!(out, CCP_RESPONSE);
        let Ok(Packet::Fulfill(fulfill)) = Packet::new_checked(&CCP_RESPONSE[..]) else {
            panic!("CCP_RESPONSE is not a Fulfill");
        };
        assert_eq!(fulfill.fulfillment(), &PEER_PROTOCOL_FULFILLMENT);
        assert!(fulfill.data().is_empty());
        for destination in [CCP_CONTROL_DESTINATION, CCP_UPDATE_DESTINATION] {
            assert!(check_address(destination).is_ok());
        }
    }

    #[test]
    fn from_prepare_checks_destination_then_condition() {
        let payload = control(vec![]).to_bytes();
        let prepare = |destination: &[u8], condition: &[u8; 32]| {
            let repr = wire::PrepareRepr {
                amount: 0,
                expires_at: 0,
                execution_condition: condition,
                destination: wire::Address::new_checked(destination).unwrap(),
                data: &payload,
            };
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut out);
            out
        };
        let from = |bytes: Vec<u8>| Request::from_prepare(&Prepare::new_checked(bytes).unwrap());
        let good = PEER_PROTOCOL_CONDITION;
        let bad = [9u8; 32];
        assert_eq!(
            from(prepare(CCP_CONTROL_DESTINATION, &good)),
            Ok(Request::Control(control(vec![])))
        );
        // The control payload is too short for an update: its own decoder, by destination.
        assert_eq!(
            from(prepare(CCP_UPDATE_DESTINATION, &good)),
            Err(Error::Oer(Field::FromEpochIndex, wire::Error::Truncated))
        );
        for other in [
            &b"peer.config"[..],
            b"peer.route",
            b"peer.route.controls",
            b"g.a",
        ] {
            assert_eq!(from(prepare(other, &good)), Err(Error::NotCcp));
            assert_eq!(from(prepare(other, &bad)), Err(Error::NotCcp));
        }
        assert_eq!(
            from(prepare(CCP_CONTROL_DESTINATION, &bad)),
            Err(Error::InvalidCondition)
        );
    }
}
