//! The static route table: an immutable snapshot that maps an ILP destination to the next hop.
//!
//! # Contract
//!
//! - The control plane calls [`RouteTable::build`] with the node's own address, the configured
//!   static routes and an optional default route. Every check runs there; a bad table is a
//!   [`RouteError`] and never reaches a core. The table is then immutable: a change means
//!   building a new table and swapping it in between batches.
//! - A route key (a *prefix*) is either a full ILP address (`g.alice`, `test.connie.bob`) or a
//!   known scheme on its own (`g`, `test`, `private`, …). The bare scheme is allowed because the
//!   JS connector installs its default route under the global prefix `g`, and an operator
//!   migrating that config should be able to say the same thing. Prefixes are unique: two
//!   routes for the same prefix are an error, never "last one wins".
//! - [`RouteTable::lookup`] is a longest-prefix match (RFC 15 "Routing") **on segment
//!   boundaries**, as the JS connector does (interledger-rs matches any byte prefix): a key
//!   matches when the destination equals it or starts with it followed by `.`, so `g.alice`
//!   catches `g.alice` and `g.alice.wallet` but not `g.alicebob`.
//!   The longest matching key wins. When no key matches, the default route applies only to a
//!   destination in the node's own scheme (the first segment of its own address); anything
//!   else is `None`, which the engine answers with F02.
//! - `lookup` allocates nothing and its cost does not depend on the number of routes: it probes
//!   an open-addressing hash table once for each key length present in the table that falls on
//!   a segment boundary of the destination, longest first, and stops at the first hit. The
//!   work is bounded by the destination's length (at most 1023 bytes) and by the longest probe
//!   sequence of the table, which is fixed at build time.
//!
//! # Non-goals
//!
//! - No learned routes, no CCP (`peer.route.*`), no route selection between several candidates
//!   for one prefix (configured > local > learned, relation, path length): that comes later
//!   and will feed this same snapshot.
//! - No special destinations: `peer.*`, `self.*` and the node's own address are handled by the
//!   engine before it asks for a route (RFC 34 "Special Addresses"). A route under them is
//!   accepted but can never be used.
//! - No link state (T01 for a known but disconnected peer), no "refuse to route back to the
//!   sender" rule and no test-versus-live family check (RFC 34): those are the engine's.
//! - Route keys come from the operator, not from peers, so the hash needs no protection
//!   against chosen collisions; a peer only chooses what is *looked up*, and every lookup is
//!   bounded by the table's longest probe sequence.
//!
//! Over 800 lines because its unit tests live beside the code (the code is under 500).

use core::fmt;

use super::PeerId;
use crate::id::GroupId;
use crate::wire::{check_address, ADDRESS_LEN_MAX};

/// Where a route leads: one peer, or a group of backends one of which is chosen per Prepare
/// (see [`super::group`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hop {
    /// This peer.
    Peer(PeerId),
    /// One of this group's backends.
    Group(GroupId),
}

impl From<PeerId> for Hop {
    fn from(peer: PeerId) -> Hop {
        Hop::Peer(peer)
    }
}

impl From<GroupId> for Hop {
    fn from(group: GroupId) -> Hop {
        Hop::Group(group)
    }
}

/// A route that matched a destination: where it leads, and how many bytes of the destination
/// its prefix covered (0 for the default route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched {
    /// The route's next hop.
    pub hop: Hop,
    /// The length of the matched prefix.
    pub prefix_len: usize,
}

/// The most static routes one table may hold.
pub const ROUTES_MAX: usize = 1 << 20;

/// The longest scheme (`private`, `example`), in bytes.
const SCHEME_LEN_MAX: usize = 7;

/// Words in the key-length bitmask: one bit for each length `0..=ADDRESS_LEN_MAX`.
const KEY_LENS_WORDS: usize = ADDRESS_LEN_MAX / 64 + 1;

// Key offsets into the arena are `u32`, key lengths are `u16`, and slot and route indices are
// `u32`; the slot array holds at most twice as many slots as routes (rounded up to a power of two).
const _: () = assert!(ROUTES_MAX * ADDRESS_LEN_MAX < (1 << 30));
const _: () = assert!(ADDRESS_LEN_MAX <= u16::MAX as usize);
const _: () = assert!(4 * ROUTES_MAX <= u32::MAX as usize);
const _: () = assert!(KEY_LENS_WORDS * 64 > ADDRESS_LEN_MAX);

/// Why a [`RouteTable`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The node's own address is not a valid ILP address.
    InvalidOwnAddress {
        /// The rejected address.
        address: Box<[u8]>,
    },
    /// A route prefix is neither a valid ILP address nor a known scheme on its own.
    InvalidPrefix {
        /// The route's position in the input, from 0.
        index: usize,
        /// The rejected prefix.
        prefix: Box<[u8]>,
    },
    /// Two routes have the same prefix.
    DuplicatePrefix {
        /// The position of the first route with this prefix, from 0.
        first: usize,
        /// The position of the second route with this prefix.
        second: usize,
        /// The repeated prefix.
        prefix: Box<[u8]>,
    },
    /// More than [`ROUTES_MAX`] routes.
    TooManyRoutes {
        /// The limit, [`ROUTES_MAX`].
        max: usize,
    },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::InvalidOwnAddress { address } => write!(
                f,
                "own address \"{}\" is not a valid ILP address",
                address.escape_ascii()
            ),
            RouteError::InvalidPrefix { index, prefix } => write!(
                f,
                "route {index}: prefix \"{}\" is neither an ILP address nor a bare scheme",
                prefix.escape_ascii()
            ),
            RouteError::DuplicatePrefix {
                first,
                second,
                prefix,
            } => write!(
                f,
                "routes {first} and {second} have the same prefix \"{}\"",
                prefix.escape_ascii()
            ),
            RouteError::TooManyRoutes { max } => write!(f, "more than {max} routes"),
        }
    }
}

impl std::error::Error for RouteError {}

/// One slot of the open-addressing table. `len == 0` marks an empty slot (keys are never empty).
/// Sixteen bytes: the hop is a peer or group index, told apart by [`GROUP_BIT`] in `offset`
/// (offsets stay below 2^30, asserted above), so a group costs the lookup nothing.
#[derive(Clone, Copy)]
struct Slot {
    /// The full hash of the key, compared before the key bytes.
    hash: u64,
    /// Where the key starts in the arena, and [`GROUP_BIT`] when the hop is a group.
    offset: u32,
    /// The key's length in bytes.
    len: u16,
    /// The peer's or the group's index.
    hop: u16,
}

/// In [`Slot::offset`]: the hop is a group.
const GROUP_BIT: u32 = 1 << 31;

const SLOT_EMPTY: Slot = Slot {
    hash: 0,
    offset: 0,
    len: 0,
    hop: 0,
};

impl Slot {
    #[inline]
    fn hop(&self) -> Hop {
        if self.offset & GROUP_BIT != 0 {
            Hop::Group(GroupId(self.hop))
        } else {
            Hop::Peer(PeerId(self.hop))
        }
    }

    #[inline]
    fn start(&self) -> usize {
        (self.offset & !GROUP_BIT) as usize
    }
}

/// An immutable set of static routes plus an optional default route; see the module docs.
#[derive(Clone)]
pub struct RouteTable {
    /// Power-of-two open-addressing table with linear probing, at most half full.
    slots: Box<[Slot]>,
    /// `64 - log2(slots.len())`: a key's home slot is `hash >> slot_shift`.
    slot_shift: u32,
    /// The longest probe sequence of any key, so a lookup never walks further.
    probe_len_max: u32,
    /// Bit `n` is set when some key is `n` bytes long.
    key_lens: [u64; KEY_LENS_WORDS],
    /// Every key's bytes, back to back, in input order.
    arena: Box<[u8]>,
    /// The slot of each route, in input order (for [`RouteTable::iter`]).
    order: Box<[u32]>,
    /// The first segment of the node's own address.
    own_scheme: Box<[u8]>,
    default_route: Option<PeerId>,
}

impl RouteTable {
    /// Checks and builds a table.
    ///
    /// `own_address` must be a valid ILP address; its scheme bounds the default route. Each
    /// route prefix must be a valid ILP address or a known scheme alone (`g`, `test`, …), and
    /// no prefix may appear twice. Errors name the offending route by its position in `routes`.
    pub fn build<I, P, H>(
        own_address: &[u8],
        routes: I,
        default_route: Option<PeerId>,
    ) -> Result<RouteTable, RouteError>
    where
        I: IntoIterator<Item = (P, H)>,
        P: AsRef<[u8]>,
        H: Into<Hop>,
    {
        if check_address(own_address).is_err() {
            return Err(RouteError::InvalidOwnAddress {
                address: own_address.into(),
            });
        }
        let own_scheme = scheme_of(own_address);

        // Check every prefix and copy it into the arena.
        let mut arena = Vec::new();
        let mut keys: Vec<(u32, u16, Hop)> = Vec::new();
        for (index, (prefix, hop)) in routes.into_iter().enumerate() {
            let prefix = prefix.as_ref();
            if index == ROUTES_MAX {
                return Err(RouteError::TooManyRoutes { max: ROUTES_MAX });
            }
            if !is_route_prefix(prefix) {
                return Err(RouteError::InvalidPrefix {
                    index,
                    prefix: prefix.into(),
                });
            }
            // Both casts are lossless: ROUTES_MAX * ADDRESS_LEN_MAX fits u32 (asserted above).
            keys.push((arena.len() as u32, prefix.len() as u16, hop.into()));
            arena.extend_from_slice(prefix);
        }

        let slot_count = (2 * keys.len()).next_power_of_two().max(2);
        let mut slots = vec![SLOT_EMPTY; slot_count].into_boxed_slice();
        // The route held by each slot, to name both routes of a duplicate.
        let mut route_of_slot = vec![u32::MAX; slot_count];
        let mut order = Vec::with_capacity(keys.len());
        let slot_shift = 64 - slot_count.trailing_zeros();
        let mask = slot_count - 1;
        let mut probe_len_max = 0u32;
        let mut key_lens = [0u64; KEY_LENS_WORDS];

        for (index, &(offset, len, hop)) in keys.iter().enumerate() {
            let key = &arena[offset as usize..][..usize::from(len)];
            let hash = hash_key(key);
            let mut slot = (hash >> slot_shift) as usize;
            let mut probe_len = 1u32;
            // Bounded: the table is at most half full, so an empty slot comes within slot_count.
            while slots[slot].len != 0 {
                let other = slots[slot];
                if other.hash == hash && &arena[other.start()..][..usize::from(other.len)] == key {
                    return Err(RouteError::DuplicatePrefix {
                        first: route_of_slot[slot] as usize,
                        second: index,
                        prefix: key.into(),
                    });
                }
                slot = (slot + 1) & mask;
                probe_len += 1;
                assert!(probe_len as usize <= slot_count);
            }
            let (hop, group) = match hop {
                Hop::Peer(peer) => (peer.0, 0),
                Hop::Group(group) => (group.0, GROUP_BIT),
            };
            slots[slot] = Slot {
                hash,
                offset: offset | group,
                len,
                hop,
            };
            route_of_slot[slot] = index as u32;
            order.push(slot as u32);
            probe_len_max = probe_len_max.max(probe_len);
            key_lens[usize::from(len) / 64] |= 1 << (len % 64);
        }

        Ok(RouteTable {
            slots,
            slot_shift,
            probe_len_max,
            key_lens,
            arena: arena.into_boxed_slice(),
            order: order.into_boxed_slice(),
            own_scheme: own_scheme.into(),
            default_route,
        })
    }

    /// The next hop for `destination`, which the caller has already checked as an ILP address.
    ///
    /// Longest segment-boundary match among the static routes; failing that, the default route
    /// if `destination` is in the node's own scheme; otherwise `None`. Allocation-free, and the
    /// cost does not grow with the number of routes. Bytes that are not a valid address give a
    /// meaningless answer but never a panic.
    #[inline]
    pub fn lookup(&self, destination: &[u8]) -> Option<Hop> {
        self.lookup_match(destination).map(|m| m.hop)
    }

    /// [`lookup`](Self::lookup) for tests of tables without groups.
    #[cfg(test)]
    pub(crate) fn lookup_peer(&self, destination: &[u8]) -> Option<PeerId> {
        self.lookup(destination).map(|hop| match hop {
            Hop::Peer(peer) => peer,
            Hop::Group(group) => panic!("{group:?}, not a peer"),
        })
    }

    /// Like [`lookup`](Self::lookup), with the length of the prefix that matched (a group
    /// hashes the segments after it).
    #[inline]
    pub fn lookup_match(&self, destination: &[u8]) -> Option<Matched> {
        // Visit every key length n present in the table with n <= destination.len(), longest
        // first; the prefix of length n is a candidate when it ends on a segment boundary.
        // Bounded: at most KEY_LENS_WORDS words, one probe per set bit, and at most
        // `probe_len_max` slots per probe.
        let len_max = destination.len().min(ADDRESS_LEN_MAX);
        let mut word = len_max / 64;
        let mut bits = self.key_lens[word] & (u64::MAX >> (63 - len_max % 64));
        loop {
            while bits != 0 {
                let bit = 63 - bits.leading_zeros() as usize;
                bits &= !(1 << bit);
                let n = word * 64 + bit;
                if n == destination.len() || destination[n] == b'.' {
                    if let Some(hop) = self.probe(&destination[..n]) {
                        return Some(Matched { hop, prefix_len: n });
                    }
                }
            }
            if word == 0 {
                break;
            }
            word -= 1;
            bits = self.key_lens[word];
        }
        self.default_for(destination).map(|peer| Matched {
            hop: Hop::Peer(peer),
            prefix_len: 0,
        })
    }

    /// The hop of the route whose prefix is exactly `key`.
    #[inline]
    fn probe(&self, key: &[u8]) -> Option<Hop> {
        let hash = hash_key(key);
        let mask = self.slots.len() - 1;
        let mut slot = (hash >> self.slot_shift) as usize;
        for _ in 0..self.probe_len_max {
            let s = &self.slots[slot];
            if s.len == 0 {
                return None;
            }
            if s.hash == hash && self.key(s) == key {
                return Some(s.hop());
            }
            slot = (slot + 1) & mask;
        }
        None
    }

    /// The default route, if `destination` is in the node's own scheme.
    #[inline]
    fn default_for(&self, destination: &[u8]) -> Option<PeerId> {
        let scheme = &*self.own_scheme;
        let in_own_scheme =
            destination.get(scheme.len()) == Some(&b'.') && destination.starts_with(scheme);
        if in_own_scheme {
            self.default_route
        } else {
            None
        }
    }

    #[inline]
    fn key(&self, slot: &Slot) -> &[u8] {
        &self.arena[slot.start()..][..usize::from(slot.len)]
    }

    /// The number of static routes (the default route not counted).
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when there are no static routes (there may still be a default route).
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The default next hop for destinations in the node's own scheme, if any.
    pub fn default_route(&self) -> Option<PeerId> {
        self.default_route
    }

    /// The scheme of the node's own address (`g`, `test`, …), which bounds the default route.
    pub fn own_scheme(&self) -> &[u8] {
        &self.own_scheme
    }

    /// The static routes as `(prefix, hop)`, in the order given to [`RouteTable::build`].
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            table: self,
            next: 0,
        }
    }
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A summary: a table may hold a million routes.
        f.debug_struct("RouteTable")
            .field("len", &self.len())
            .field("own_scheme", &self.own_scheme.escape_ascii().to_string())
            .field("default_route", &self.default_route)
            .field("slots", &self.slots.len())
            .field("probe_len_max", &self.probe_len_max)
            .finish()
    }
}

impl<'a> IntoIterator for &'a RouteTable {
    type Item = (&'a [u8], Hop);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Iterator over the static routes of a [`RouteTable`], from [`RouteTable::iter`].
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    table: &'a RouteTable,
    next: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], Hop);

    fn next(&mut self) -> Option<(&'a [u8], Hop)> {
        let slot = *self.table.order.get(self.next)?;
        self.next += 1;
        let slot = &self.table.slots[slot as usize];
        Some((self.table.key(slot), slot.hop()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.table.order.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// The first segment of a checked address.
fn scheme_of(address: &[u8]) -> &[u8] {
    let end = address
        .iter()
        .position(|&b| b == b'.')
        .unwrap_or(address.len());
    &address[..end]
}

/// A route key is a valid ILP address or a known scheme alone (also what CCP accepts as a
/// route's prefix).
pub fn is_route_prefix(prefix: &[u8]) -> bool {
    check_address(prefix).is_ok() || is_bare_scheme(prefix)
}

/// True for `g`, `test`, `private`, … on their own. `wire` keeps its scheme list private, so
/// rather than copy it, ask the address check about `<prefix>.a`: it is valid exactly when
/// `prefix` is a known scheme (given that `prefix` has no dot).
fn is_bare_scheme(prefix: &[u8]) -> bool {
    if prefix.is_empty() || prefix.len() > SCHEME_LEN_MAX || prefix.contains(&b'.') {
        return false;
    }
    let mut probe = [0u8; SCHEME_LEN_MAX + 2];
    probe[..prefix.len()].copy_from_slice(prefix);
    probe[prefix.len()] = b'.';
    probe[prefix.len() + 1] = b'a';
    check_address(&probe[..prefix.len() + 2]).is_ok()
}

/// Multiplier from rustc-hash 2 (FxHasher): odd, with well-spread bits.
const HASH_K: u64 = 0xf135_7aea_2e62_a9c5;

/// An FxHash-style hash of a key, eight bytes per multiply.
///
/// Home slots are taken from the *high* bits, which depend on every input bit (a product's
/// bit `i` depends on the factors' bits `0..=i`); the low bits are weak and only serve, with
/// the rest of the word, as the equality pre-check. The last word is read as the key's last
/// eight bytes (overlapping the previous word) and short keys as two overlapping halves, so
/// there is no variable-length copy; the length, mixed in first, tells such overlaps apart.
#[inline]
fn hash_key(key: &[u8]) -> u64 {
    let mix = |hash: u64, word: u64| (hash.rotate_left(5) ^ word).wrapping_mul(HASH_K);
    let len = key.len();
    let hash = (len as u64).wrapping_mul(HASH_K);
    if len >= 8 {
        let mut hash = hash;
        // Every full word but the last, then the last eight bytes.
        let mut start = 0;
        while start + 8 < len {
            hash = mix(hash, read_u64(&key[start..start + 8]));
            start += 8;
        }
        mix(hash, read_u64(&key[len - 8..]))
    } else if len >= 4 {
        let low = u64::from(read_u32(&key[..4]));
        let high = u64::from(read_u32(&key[len - 4..]));
        mix(hash, low | high << 32)
    } else if len > 0 {
        let word = u64::from(key[0]) | u64::from(key[len / 2]) << 8 | u64::from(key[len - 1]) << 16;
        mix(hash, word)
    } else {
        hash
    }
}

#[inline]
fn read_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

#[inline]
fn read_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes);
    u32::from_le_bytes(word)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::engine::test_rng::Rng;

    const OWN: &[u8] = b"g.router";

    fn table(routes: &[(&str, u16)], default_route: Option<u16>) -> RouteTable {
        RouteTable::build(
            OWN,
            routes.iter().map(|&(p, id)| (p, PeerId(id))),
            default_route.map(PeerId),
        )
        .unwrap()
    }

    fn lookup(table: &RouteTable, destination: &str) -> Option<u16> {
        assert_eq!(
            check_address(destination.as_bytes()),
            Ok(()),
            "{destination}"
        );
        table.lookup_peer(destination.as_bytes()).map(|p| p.0)
    }

    #[test]
    fn exact_match() {
        let t = table(&[("g.alice", 1), ("g.bob", 2)], None);
        assert_eq!(lookup(&t, "g.alice"), Some(1));
        assert_eq!(lookup(&t, "g.bob"), Some(2));
        assert_eq!(lookup(&t, "g.carol"), None);
    }

    #[test]
    fn longer_prefix_wins() {
        let t = table(
            &[
                ("g.alice", 1),
                ("g.alice.wallet", 2),
                ("g.alice.wallet.x.y", 3),
            ],
            Some(9),
        );
        assert_eq!(lookup(&t, "g.alice.wallet.bob"), Some(2));
        assert_eq!(lookup(&t, "g.alice.wallet"), Some(2));
        assert_eq!(lookup(&t, "g.alice.other"), Some(1));
        assert_eq!(lookup(&t, "g.alice.wallet.x"), Some(2));
        assert_eq!(lookup(&t, "g.alice.wallet.x.y"), Some(3));
        assert_eq!(lookup(&t, "g.alice.wallet.x.y.z"), Some(3));
        assert_eq!(lookup(&t, "g.alice.wallet.x.yy"), Some(2));
    }

    #[test]
    fn match_on_segment_boundary_only() {
        let t = table(&[("g.alice", 1)], None);
        assert_eq!(lookup(&t, "g.alicebob"), None);
        assert_eq!(lookup(&t, "g.alicebob.x"), None);
        assert_eq!(lookup(&t, "g.alice.bob"), Some(1));
        let t = table(&[("g.alice", 1), ("g.alicebob", 2)], None);
        assert_eq!(lookup(&t, "g.alicebob"), Some(2));
        assert_eq!(lookup(&t, "g.alice.bob"), Some(1));
        // A key longer than the destination never matches.
        assert_eq!(lookup(&t, "g.ali"), None);
    }

    #[test]
    fn default_only_within_own_scheme() {
        let t = table(&[("g.alice", 1), ("test.bob", 2)], Some(7));
        assert_eq!(t.default_route(), Some(PeerId(7)));
        assert_eq!(t.own_scheme(), b"g");
        assert_eq!(lookup(&t, "g.x.y"), Some(7));
        assert_eq!(lookup(&t, "g.alicebob"), Some(7));
        assert_eq!(lookup(&t, "test.x"), None);
        assert_eq!(lookup(&t, "test.bob.x"), Some(2));
        assert_eq!(lookup(&t, "private.x"), None);
        // `g` is not a prefix of the scheme `gg…`; `test` is not `test1`.
        let t = RouteTable::build(b"test.router", [(b"g.a", PeerId(1))], Some(PeerId(7))).unwrap();
        assert_eq!(lookup(&t, "test.x"), Some(7));
        assert_eq!(lookup(&t, "test1.x"), None);
        assert_eq!(lookup(&t, "g.b"), None);
    }

    #[test]
    fn no_default_no_route() {
        let t = table(&[("g.alice", 1)], None);
        assert_eq!(t.default_route(), None);
        assert_eq!(lookup(&t, "g.x.y"), None);
        assert_eq!(lookup(&t, "test.x"), None);
        let empty = table(&[], None);
        assert!(empty.is_empty());
        assert_eq!(lookup(&empty, "g.alice"), None);
        let default_only = table(&[], Some(3));
        assert!(default_only.is_empty());
        assert_eq!(lookup(&default_only, "g.alice"), Some(3));
        assert_eq!(lookup(&default_only, "test.alice"), None);
    }

    #[test]
    fn bare_scheme_route() {
        let t = table(&[("g", 1), ("test", 2), ("g.alice", 3)], Some(9));
        assert_eq!(lookup(&t, "g.bob"), Some(1));
        assert_eq!(lookup(&t, "g.alice.x"), Some(3));
        assert_eq!(lookup(&t, "test.x.y"), Some(2));
        // `test` is a segment, not a byte prefix: it does not catch `test1`.
        assert_eq!(lookup(&t, "test1.x"), None);
        for scheme in [
            "g", "private", "example", "peer", "self", "test", "test3", "local",
        ] {
            assert!(is_bare_scheme(scheme.as_bytes()), "{scheme}");
        }
        for not in [
            "", "h", "gg", "test4", "privatex", "G", "g.", ".g", "example1",
        ] {
            assert!(!is_bare_scheme(not.as_bytes()), "{not:?}");
        }
    }

    #[test]
    fn duplicate_prefix_is_an_error() {
        let err = RouteTable::build(
            OWN,
            [
                ("g.alice", PeerId(1)),
                ("g.bob", PeerId(2)),
                ("g.alice", PeerId(3)),
            ],
            None,
        )
        .unwrap_err();
        assert_eq!(
            err,
            RouteError::DuplicatePrefix {
                first: 0,
                second: 2,
                prefix: (*b"g.alice").into(),
            }
        );
        assert_eq!(
            err.to_string(),
            "routes 0 and 2 have the same prefix \"g.alice\""
        );
        // Same peer or not, a repeat is an error; so is a repeated bare scheme.
        let err = RouteTable::build(OWN, [("g", PeerId(1)), ("g", PeerId(1))], None).unwrap_err();
        assert!(matches!(
            err,
            RouteError::DuplicatePrefix {
                first: 0,
                second: 1,
                ..
            }
        ));
    }

    #[test]
    fn invalid_prefix_is_an_error() {
        for bad in [
            "",
            "g.",
            "g..a",
            "foo.bar",
            "G.alice",
            "g.alice bob",
            ".g",
            "test4",
            "g.a.",
        ] {
            let err =
                RouteTable::build(OWN, [("g.ok", PeerId(1)), (bad, PeerId(2))], None).unwrap_err();
            assert_eq!(
                err,
                RouteError::InvalidPrefix {
                    index: 1,
                    prefix: bad.as_bytes().into(),
                },
                "{bad:?}"
            );
        }
        let err = RouteTable::build(OWN, [(&b"g.\xff"[..], PeerId(1))], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "route 0: prefix \"g.\\xff\" is neither an ILP address nor a bare scheme"
        );
    }

    #[test]
    fn too_many_routes_is_an_error() {
        // The count is checked before duplicates, so one repeated prefix is enough.
        let routes = std::iter::repeat_n((b"g.a", PeerId(1)), ROUTES_MAX + 1);
        let err = RouteTable::build(OWN, routes, None).unwrap_err();
        assert_eq!(err, RouteError::TooManyRoutes { max: ROUTES_MAX });
        assert_eq!(err.to_string(), format!("more than {ROUTES_MAX} routes"));
    }

    #[test]
    fn invalid_own_address_is_an_error() {
        for bad in ["", "g", "g.", "nope.router"] {
            let err = RouteTable::build(bad.as_bytes(), [("g.a", PeerId(1))], None).unwrap_err();
            assert_eq!(
                err,
                RouteError::InvalidOwnAddress {
                    address: bad.as_bytes().into()
                }
            );
        }
        assert_eq!(
            RouteTable::build(b"g", [("g.a", PeerId(1))], None)
                .unwrap_err()
                .to_string(),
            "own address \"g\" is not a valid ILP address"
        );
    }

    #[test]
    fn len_iter_and_accessors() {
        let routes = [("g.b", 2), ("g", 1), ("test.c.d", 3)];
        let t = table(&routes, Some(4));
        assert_eq!(t.len(), 3);
        assert!(!t.is_empty());
        assert_eq!(t.iter().len(), 3);
        let listed: Vec<(&[u8], Hop)> = t.iter().collect();
        let expected: Vec<(&[u8], Hop)> = routes
            .iter()
            .map(|&(p, id)| (p.as_bytes(), Hop::Peer(PeerId(id))))
            .collect();
        assert_eq!(listed, expected);
        assert_eq!((&t).into_iter().count(), 3);
        let debug = format!("{t:?}");
        assert!(debug.contains("len: 3"), "{debug}");
    }

    #[test]
    fn longest_keys_and_addresses() {
        let mut long = b"g.".to_vec();
        long.resize(ADDRESS_LEN_MAX, b'a');
        let mut parent = long.clone();
        parent[ADDRESS_LEN_MAX - 3] = b'.';
        let t = RouteTable::build(
            OWN,
            [
                (&long[..], PeerId(1)),
                (&parent[..ADDRESS_LEN_MAX - 3], PeerId(2)),
            ],
            None,
        )
        .unwrap();
        assert_eq!(t.lookup_peer(&long), Some(PeerId(1)));
        assert_eq!(t.lookup_peer(&parent), Some(PeerId(2)));
        // Unchecked input longer than any address: no panic, and no match past the limit.
        let mut longer = long.clone();
        longer.extend_from_slice(b".x");
        assert_eq!(t.lookup_peer(&longer), Some(PeerId(1)));
        assert_eq!(t.lookup_peer(b""), None);
        assert_eq!(t.lookup_peer(b"."), None);
    }

    #[test]
    fn many_routes_each_find_themselves() {
        let keys: Vec<String> = (0..5000)
            .map(|i| match i % 3 {
                0 => format!("g.peer{i}"),
                1 => format!("g.peer{}.sub{}", i - 1, i % 7),
                _ => format!("test.n{i}.a.b.c"),
            })
            .collect();
        let t = RouteTable::build(
            OWN,
            keys.iter().enumerate().map(|(i, k)| (k, PeerId(i as u16))),
            None,
        )
        .unwrap();
        assert_eq!(t.len(), keys.len());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.lookup_peer(k.as_bytes()), Some(PeerId(i as u16)), "{k}");
        }
        // The hash spreads these similar keys: no long probe chains at load <= 1/2.
        assert!(t.probe_len_max <= 16, "{t:?}");
    }

    /// The reference: scan every route, keep the longest segment-boundary match, then apply
    /// the default rule by comparing first segments.
    fn naive_lookup(
        own: &str,
        routes: &[(String, u16)],
        default_route: Option<u16>,
        destination: &str,
    ) -> Option<u16> {
        let mut best: Option<(usize, u16)> = None;
        for (key, peer) in routes {
            let on_boundary = destination == key
                || (destination.starts_with(key.as_str())
                    && destination.as_bytes()[key.len()] == b'.');
            if on_boundary && best.is_none_or(|(len, _)| key.len() > len) {
                best = Some((key.len(), *peer));
            }
        }
        if let Some((_, peer)) = best {
            return Some(peer);
        }
        let first = |s: &str| s.split('.').next().unwrap().to_owned();
        if first(destination) == first(own) {
            default_route
        } else {
            None
        }
    }

    #[test]
    fn randomized_against_naive() {
        // A small alphabet, so keys share byte prefixes (`a`, `ab`, `aab`) and segment
        // boundaries matter.
        const SCHEMES: [&str; 4] = ["g", "test", "test1", "private"];
        const SEGMENTS: [&str; 6] = ["a", "ab", "aab", "b", "ba", "a-b"];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut checked = 0;
        for _ in 0..100 {
            let random_address = |rng: &mut Rng, depth_max: usize| {
                let mut s = rng.pick(&SCHEMES).to_owned();
                for _ in 0..1 + rng.index(depth_max) {
                    s.push('.');
                    s.push_str(rng.pick(&SEGMENTS));
                }
                s
            };
            let own = random_address(&mut rng, 2);
            let default_route = (rng.index(3) != 0).then(|| rng.index(1000) as u16);
            let mut routes: Vec<(String, u16)> = Vec::new();
            for _ in 0..rng.index(40) {
                let key = if rng.index(10) == 0 {
                    rng.pick(&SCHEMES).to_owned()
                } else {
                    random_address(&mut rng, 4)
                };
                if routes.iter().all(|(k, _)| *k != key) {
                    routes.push((key, rng.index(1000) as u16));
                }
            }
            let t = RouteTable::build(
                own.as_bytes(),
                routes.iter().map(|(k, p)| (k.as_bytes(), PeerId(*p))),
                default_route.map(PeerId),
            )
            .unwrap();
            assert_eq!(t.len(), routes.len());
            for _ in 0..30 {
                let destination = random_address(&mut rng, 5);
                let expected = naive_lookup(&own, &routes, default_route, &destination);
                assert_eq!(
                    lookup(&t, &destination),
                    expected,
                    "own {own}, routes {routes:?}, default {default_route:?}, dest {destination}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 3000);
    }
}
