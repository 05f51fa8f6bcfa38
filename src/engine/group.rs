//! Backend groups: one route that leads to several peers (a cluster of connectors behind the
//! router), one of them chosen per Prepare. Sans I/O and per core, like the rest of the engine:
//! each core keeps its own [`Group`] and is told which backends are up.
//!
//! Two policies:
//! - [`Policy::Hash`]: sticky by destination. A Maglev table (Eisenbud et al., NSDI 2016) of a
//!   prime number of entries maps a hash of the destination (or of its first segments after
//!   the route's prefix) to a backend, so that while the set of backends that are up is stable
//!   a destination always goes to the same one (a STREAM connection stays on one receiver),
//!   and when one leaves or returns only about its share of destinations moves. Weights give
//!   a backend that many turns in each round of the table's population.
//! - [`Policy::LeastInFlight`]: the backend with the fewest Prepares in flight on this core,
//!   relative to its weight.
//!
//! Lookups allocate nothing and cost one hash of the destination and one table read; the table
//! is rebuilt only when a backend goes down or comes back.

use super::PeerId;

/// How a group picks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Sticky by destination: the first `hash_segments` segments after the route's prefix (0:
    /// the whole destination) choose the backend.
    Hash {
        /// Segments after the prefix that are hashed; 0 hashes the whole destination.
        hash_segments: u16,
    },
    /// The backend with the fewest Prepares in flight on this core (relative to its weight).
    LeastInFlight,
}

/// One backend of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub peer: PeerId,
    /// Its name: the Maglev permutation comes from it, so it stays put when peers are added
    /// to or removed from the config.
    pub name: String,
    /// Its share relative to the others (at least 1).
    pub weight: u32,
}

/// A group's state on one core.
#[derive(Debug, Clone)]
pub struct Group {
    backends: Vec<Backend>,
    policy: Policy,
    up: Vec<bool>,
    /// Maglev lookup table: an index into `backends` (`u16::MAX`: every backend is down).
    table: Box<[u16]>,
    /// Per backend: its permutation's offset and skip.
    permutations: Vec<(u64, u64)>,
}

/// The table sizes: primes, each the smallest at least 2^k (k = 8 ..= 16).
const TABLE_PRIMES: [usize; 9] = [257, 521, 1031, 2053, 4099, 8209, 16411, 32771, 65537];

/// The most backends a group may have.
pub const BACKENDS_MAX: usize = 256;

/// No backend is up.
const NONE: u16 = u16::MAX;

impl Group {
    /// A group of `backends` (1..=[`BACKENDS_MAX`], each weight at least 1), every one of them
    /// down until [`set_up`](Self::set_up) says otherwise.
    ///
    /// # Panics
    /// On an empty group, too many backends or a zero weight: the config checks these.
    pub fn new(backends: Vec<Backend>, policy: Policy) -> Group {
        assert!(
            !backends.is_empty() && backends.len() <= BACKENDS_MAX,
            "1..=BACKENDS_MAX backends"
        );
        assert!(
            backends.iter().all(|b| b.weight > 0),
            "weights are at least 1"
        );
        let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
        // About 256 table entries per unit of weight keep the shares, and what moves when a
        // backend leaves beyond its own share, within a few percent.
        let wanted = usize::try_from(total.saturating_mul(256)).unwrap_or(usize::MAX);
        let size = TABLE_PRIMES
            .iter()
            .copied()
            .find(|&p| p >= wanted)
            .unwrap_or(TABLE_PRIMES[TABLE_PRIMES.len() - 1]);
        let permutations = backends
            .iter()
            .map(|b| {
                let name = b.name.as_bytes();
                let offset = hash_bytes(name, 0x6d61_676c_6576_0001) % size as u64;
                let skip = hash_bytes(name, 0x6d61_676c_6576_0002) % (size as u64 - 1) + 1;
                (offset, skip)
            })
            .collect();
        let up = vec![false; backends.len()];
        let mut group = Group {
            backends,
            policy,
            up,
            table: vec![NONE; size].into_boxed_slice(),
            permutations,
        };
        group.populate();
        group
    }

    /// The backends, in config order.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// Marks `peer` up or down if it is one of the backends; the table is rebuilt when that
    /// changes anything. Returns whether it did.
    pub fn set_up(&mut self, peer: PeerId, up: bool) -> bool {
        let mut changed = false;
        for (i, backend) in self.backends.iter().enumerate() {
            if backend.peer == peer && self.up[i] != up {
                self.up[i] = up;
                changed = true;
            }
        }
        if changed {
            self.populate();
        }
        changed
    }

    /// Whether any backend is up.
    pub fn any_up(&self) -> bool {
        self.up.iter().any(|&u| u)
    }

    /// The backend for a Prepare to `destination` that matched a route of `prefix_len` bytes,
    /// among those that are up, not `avoid` and not `full`. `in_flight(peer)` is how many
    /// Prepares this core has in flight to a peer (for [`Policy::LeastInFlight`]); `full(peer)`
    /// says a backend is at its in-flight cap. `None` when no backend qualifies.
    ///
    /// [`Policy::Hash`] takes the Maglev table's backend; when that one is full or avoided it
    /// fails over to the next in the destination's own order (weighted rendezvous hashing over
    /// the others), so a destination's failover backend is sticky too.
    pub fn select(
        &self,
        destination: &[u8],
        prefix_len: usize,
        in_flight: impl Fn(PeerId) -> usize,
        full: impl Fn(PeerId) -> bool,
        avoid: Option<PeerId>,
    ) -> Option<PeerId> {
        let usable = |b: &Backend| Some(b.peer) != avoid && !full(b.peer);
        match self.policy {
            Policy::Hash { hash_segments } => {
                let key = hash_key(destination, prefix_len, hash_segments);
                let hash = hash_bytes(key, 0);
                let entry = self.table[(hash % self.table.len() as u64) as usize];
                if entry == NONE {
                    return None;
                }
                let primary = &self.backends[usize::from(entry)];
                if usable(primary) {
                    return Some(primary.peer);
                }
                // Cold path: weighted rendezvous, the highest score w / -ln(u) wins.
                self.backends
                    .iter()
                    .zip(&self.up)
                    .filter(|(b, &up)| up && usable(b))
                    .map(|(b, _)| {
                        let h = hash_bytes(b.name.as_bytes(), hash);
                        // u in (0, 1): 53 bits of the hash, never 0.
                        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                        (f64::from(b.weight) / -u.ln(), b.peer)
                    })
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, peer)| peer)
            }
            Policy::LeastInFlight => self
                .backends
                .iter()
                .zip(&self.up)
                .filter(|(b, &up)| up && usable(b))
                .min_by_key(|(b, _)| {
                    // in_flight / weight, compared without division: scaled by the largest
                    // weight a group can have.
                    let load = in_flight(b.peer) as u128 * u128::from(u32::MAX);
                    load / u128::from(b.weight)
                })
                .map(|(b, _)| b.peer),
        }
    }

    /// [`Policy::Hash`]'s choice for `destination`, from the table alone (`None` for the
    /// other policy, or when every backend is down).
    #[inline]
    pub fn first_choice(&self, destination: &[u8], prefix_len: usize) -> Option<PeerId> {
        let Policy::Hash { hash_segments } = self.policy else {
            return None;
        };
        let key = hash_key(destination, prefix_len, hash_segments);
        let entry = self.table[(hash_bytes(key, 0) % self.table.len() as u64) as usize];
        (entry != NONE).then(|| self.backends[usize::from(entry)].peer)
    }

    /// How the group picks a backend.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Whether `peer` is one of the backends.
    pub fn contains(&self, peer: PeerId) -> bool {
        self.backends.iter().any(|b| b.peer == peer)
    }

    /// Fills the Maglev table with the backends that are up: each takes, in turn (weight
    /// turns per round), the next entry of its permutation not yet taken.
    fn populate(&mut self) {
        let size = self.table.len() as u64;
        self.table.fill(NONE);
        let live: Vec<usize> = (0..self.backends.len()).filter(|&i| self.up[i]).collect();
        if live.is_empty() {
            return;
        }
        let mut next = vec![0u64; self.backends.len()];
        let mut filled = 0u64;
        'fill: loop {
            for &i in &live {
                let (offset, skip) = self.permutations[i];
                for _ in 0..self.backends[i].weight {
                    // Bounded: the permutation visits every entry once in `size` steps.
                    loop {
                        let entry = ((offset + next[i] * skip) % size) as usize;
                        next[i] += 1;
                        if self.table[entry] == NONE {
                            self.table[entry] = i as u16;
                            filled += 1;
                            break;
                        }
                    }
                    if filled == size {
                        break 'fill;
                    }
                }
            }
        }
    }
}

/// The part of `destination` that chooses the backend: the route's prefix and the next
/// `segments` segments after it (the whole destination when `segments` is 0 or it has fewer).
fn hash_key(destination: &[u8], prefix_len: usize, segments: u16) -> &[u8] {
    if segments == 0 {
        return destination;
    }
    let mut end = prefix_len.min(destination.len());
    for _ in 0..segments {
        if end >= destination.len() {
            return destination;
        }
        // Skip the '.' after the prefix (or the last segment), then the segment.
        end += 1;
        end = destination[end..]
            .iter()
            .position(|&b| b == b'.')
            .map_or(destination.len(), |p| end + p);
    }
    &destination[..end]
}

/// A fast, fixed 64-bit hash (the same on every core and every run), eight bytes at a time.
fn hash_bytes(bytes: &[u8], seed: u64) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        h = (h ^ word).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    // splitmix64's finalizer: every input bit reaches every output bit.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod test {
    use super::*;

    fn group(weights: &[u32], policy: Policy) -> Group {
        let backends = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Backend {
                peer: PeerId(i as u16 + 10),
                name: format!("b{i}"),
                weight,
            })
            .collect();
        let mut group = Group::new(backends, policy);
        for i in 0..weights.len() {
            group.set_up(PeerId(i as u16 + 10), true);
        }
        group
    }

    const HASH: Policy = Policy::Hash { hash_segments: 0 };

    /// Selection with no cap and nothing avoided.
    fn pick(
        group: &Group,
        destination: &[u8],
        prefix_len: usize,
        in_flight: impl Fn(PeerId) -> usize,
    ) -> Option<PeerId> {
        group.select(destination, prefix_len, in_flight, |_| false, None)
    }

    #[test]
    fn a_full_or_avoided_backend_fails_over_to_a_sticky_second_choice() {
        let group = group(&[1, 1, 1, 1], HASH);
        let mut seconds = vec![0usize; 4];
        for d in destinations(1000) {
            let d = d.as_bytes();
            let first = pick(&group, d, 9, |_| 0).unwrap();
            let second = group.select(d, 9, |_| 0, |p| p == first, None).unwrap();
            assert_ne!(second, first);
            // The same second choice whether the first is full or avoided, every time.
            assert_eq!(
                group.select(d, 9, |_| 0, |_| false, Some(first)),
                Some(second)
            );
            assert_eq!(
                group.select(d, 9, |_| 0, |p| p == first, None),
                Some(second)
            );
            seconds[usize::from(second.0 - 10)] += 1;
            let third = group.select(d, 9, |_| 0, |p| p == first || p == second, None);
            assert!(third.is_some_and(|t| t != first && t != second));
        }
        // The failover load spreads over the others too.
        assert!(seconds.iter().all(|&n| n > 150), "{seconds:?}");
        assert_eq!(group.select(b"g.cluster.x", 9, |_| 0, |_| true, None), None);
        let least = self::group(&[1, 1], Policy::LeastInFlight);
        let load = |p: PeerId| usize::from(p.0 - 10);
        assert_eq!(
            least.select(b"g.c.x", 3, load, |_| false, None),
            Some(PeerId(10))
        );
        assert_eq!(
            least.select(b"g.c.x", 3, load, |p| p == PeerId(10), None),
            Some(PeerId(11))
        );
        assert_eq!(
            least.select(b"g.c.x", 3, load, |_| false, Some(PeerId(10))),
            Some(PeerId(11))
        );
    }

    fn destinations(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("g.cluster.receiver{i}.x")).collect()
    }

    fn spread(group: &Group, destinations: &[String]) -> Vec<usize> {
        let mut counts = vec![0usize; group.backends().len()];
        for d in destinations {
            let peer = pick(group, d.as_bytes(), 9, |_| 0).unwrap();
            counts[usize::from(peer.0 - 10)] += 1;
        }
        counts
    }

    #[test]
    fn four_equal_backends_share_1000_destinations_within_ten_percent() {
        let group = group(&[1, 1, 1, 1], HASH);
        for count in spread(&group, &destinations(1000)) {
            assert!(
                (225..=275).contains(&count),
                "{count} of 1000, not 250 ± 10 %"
            );
        }
    }

    #[test]
    fn weights_give_proportional_shares() {
        let group = group(&[1, 1, 2], HASH);
        let counts = spread(&group, &destinations(4000));
        assert!((900..=1100).contains(&counts[0]), "{counts:?}");
        assert!((900..=1100).contains(&counts[1]), "{counts:?}");
        assert!((1800..=2200).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn a_destination_sticks_to_its_backend_and_hash_segments_group_destinations() {
        let group = group(&[1, 1, 1, 1], HASH);
        for d in destinations(100) {
            let first = pick(&group, d.as_bytes(), 9, |_| 0);
            for _ in 0..3 {
                assert_eq!(pick(&group, d.as_bytes(), 9, |_| 0), first);
            }
        }
        // One segment after the prefix `g.cluster`: every address under one receiver goes to
        // the same backend.
        let group = self::group(&[1, 1, 1, 1], Policy::Hash { hash_segments: 1 });
        for i in 0..50 {
            let base = format!("g.cluster.receiver{i}");
            let chosen = pick(&group, base.as_bytes(), 9, |_| 0);
            for tail in ["a", "b.c", "zzz.yyy.xxx"] {
                let d = format!("{base}.{tail}");
                assert_eq!(pick(&group, d.as_bytes(), 9, |_| 0), chosen, "{d}");
            }
        }
        assert_eq!(hash_key(b"g.cluster.r1.a.b", 9, 1), b"g.cluster.r1");
        assert_eq!(hash_key(b"g.cluster.r1.a.b", 9, 2), b"g.cluster.r1.a");
        assert_eq!(hash_key(b"g.cluster.r1", 9, 3), b"g.cluster.r1");
        assert_eq!(hash_key(b"g.cluster", 9, 1), b"g.cluster");
    }

    #[test]
    fn a_backend_leaving_or_returning_moves_about_its_share_only() {
        let mut group = group(&[1, 1, 1, 1], HASH);
        let all = destinations(4000);
        let before: Vec<_> = all
            .iter()
            .map(|d| pick(&group, d.as_bytes(), 9, |_| 0))
            .collect();
        group.set_up(PeerId(12), false);
        let during: Vec<_> = all
            .iter()
            .map(|d| pick(&group, d.as_bytes(), 9, |_| 0))
            .collect();
        let moved = before.iter().zip(&during).filter(|(a, b)| a != b).count();
        let left = before.iter().filter(|&&p| p == Some(PeerId(12))).count();
        assert!(
            during.iter().all(|&p| p != Some(PeerId(12))),
            "never the one down"
        );
        // Those on the backend that left must move; of the others at most a few percent.
        assert!(moved >= left, "{moved} < {left}");
        assert!(
            moved <= left + all.len() * 3 / 100,
            "{moved} moved, {left} had to"
        );
        group.set_up(PeerId(12), true);
        let after: Vec<_> = all
            .iter()
            .map(|d| pick(&group, d.as_bytes(), 9, |_| 0))
            .collect();
        let back = during.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(
            back <= all.len() / 4 + all.len() * 3 / 100,
            "{back} moved back"
        );
        let same = before.iter().zip(&after).filter(|(a, b)| a == b).count();
        assert_eq!(
            same,
            all.len(),
            "the same table once the same backends are up"
        );
    }

    #[test]
    fn every_backend_down_selects_none() {
        let mut group = group(&[1, 2], HASH);
        group.set_up(PeerId(10), false);
        group.set_up(PeerId(11), false);
        assert!(!group.any_up());
        assert_eq!(pick(&group, b"g.cluster.x", 9, |_| 0), None);
        let mut least = self::group(&[1, 1], Policy::LeastInFlight);
        least.set_up(PeerId(10), false);
        least.set_up(PeerId(11), false);
        assert_eq!(pick(&least, b"g.cluster.x", 9, |_| 0), None);
        assert!(!group.set_up(PeerId(99), true), "not a backend");
    }

    #[test]
    fn least_in_flight_picks_the_least_loaded_relative_to_its_weight() {
        let group = group(&[1, 1, 2], Policy::LeastInFlight);
        let load = |loads: [usize; 3]| move |p: PeerId| loads[usize::from(p.0 - 10)];
        assert_eq!(pick(&group, b"g.c.x", 3, load([5, 2, 9])), Some(PeerId(11)));
        // 9 in flight on weight 2 is 4.5 per unit: less than 5 on weight 1.
        assert_eq!(pick(&group, b"g.c.x", 3, load([5, 6, 9])), Some(PeerId(12)));
        let mut group = group;
        group.set_up(PeerId(11), false);
        assert_eq!(
            pick(&group, b"g.c.x", 3, load([5, 0, 11])),
            Some(PeerId(10))
        );
    }
}
