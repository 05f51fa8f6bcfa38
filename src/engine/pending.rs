//! The in-flight table: a fixed number of slots for forwarded Prepares, and a coarse expiry
//! wheel threaded through them (one intrusive list per tick, not a timer per packet).
//!
//! Nothing here allocates after [`Pending::new`]. A full table refuses the insert (the engine
//! answers T03). A [`SlotId`] carries a generation, so a reply for a slot that was already
//! resolved and reused is recognised as stale instead of resolving the wrong Prepare.
//!
//! Expiry: a slot is filed under tick `ceil(expires_at / tick_ms)`; [`Pending::expire`] walks
//! the ticks that have fully passed and moves each slot whose `expires_at <= now` to the
//! expired queue, where it stays (still occupying its slot) until the engine drains it. A slot
//! therefore expires at most one tick after its deadline, and never before.

use super::PeerId;
use crate::wire::CONDITION_LEN;

/// Identifies an in-flight Prepare: slot index and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotId {
    index: u32,
    generation: u32,
}

impl SlotId {
    /// Packs the id into a `u64` (for the runtime's request tables). The top bit is always
    /// clear and the index takes at most 24 bits.
    pub fn to_u64(self) -> u64 {
        u64::from(self.generation) << 32 | u64::from(self.index)
    }

    /// Unpacks an id made by [`to_u64`](Self::to_u64).
    pub fn from_u64(value: u64) -> Self {
        SlotId {
            index: value as u32,
            generation: (value >> 32) as u32,
        }
    }

    /// The slot index (below [`PENDING_MAX`]).
    pub fn index(self) -> u32 {
        self.index
    }

    /// The generation (below 2^31).
    pub fn generation(self) -> u32 {
        self.generation
    }

    /// Rebuilds an id from its parts.
    pub fn from_parts(index: u32, generation: u32) -> Self {
        SlotId { index, generation }
    }
}

/// What the engine remembers about a forwarded Prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// The incoming peer (the reply goes back to it).
    pub from: PeerId,
    /// The next hop.
    pub to: PeerId,
    /// The runtime's handle for the incoming request (e.g. link and BTP request id).
    pub tag: super::Tag,
    /// The amount held on `from`, in its units.
    pub amount_in: u64,
    /// The amount sent to `to`, in its units.
    pub amount_out: u64,
    /// The condition a Fulfill must hash to.
    pub condition: [u8; CONDITION_LEN],
    /// The outgoing expiry, Unix ms: replies at or after it are late.
    pub expires_at: i64,
    /// Not sent yet: its hold waits for headroom from other cores (nothing is held).
    pub waiting: bool,
    /// Times it moved to another backend of its group before a byte of it left
    /// ([`super::Engine::reroute`]).
    pub reroutes: u8,
    /// When it was forwarded (Unix ms), for the round-trip histogram.
    pub sent_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    InFlight,
    Expired,
}

const NIL: u32 = u32::MAX;
const GENERATION_MASK: u32 = 0x7fff_ffff;

/// The largest table: slot indices fit 24 bits, so the runtime can pack an id with a core.
pub const PENDING_MAX: usize = 1 << 24;

#[derive(Debug, Clone)]
struct Slot {
    generation: u32,
    state: State,
    data: InFlight,
    // Free: next free slot. InFlight: neighbours in its wheel bucket.
    prev: u32,
    next: u32,
    bucket: u32,
}

/// The fixed-capacity table of in-flight Prepares with its expiry wheel.
#[derive(Debug)]
pub struct Pending {
    slots: Vec<Slot>,
    free_head: u32,
    in_use: usize,
    tick_ms: i64,
    buckets: Vec<u32>,
    /// The last tick whose bucket was processed.
    cursor: i64,
    expired: Vec<u32>,
    expired_head: usize,
    expired_len: usize,
}

impl Pending {
    /// A table of `capacity` slots whose wheel spans at least `horizon_ms` in ticks of
    /// `tick_ms`, starting at `now`.
    pub fn new(capacity: usize, tick_ms: u32, horizon_ms: u64, now: i64) -> Self {
        assert!(
            capacity > 0 && capacity < NIL as usize,
            "capacity {capacity}"
        );
        assert!(tick_ms > 0, "tick of 0 ms");
        let empty = InFlight {
            from: PeerId(0),
            to: PeerId(0),
            tag: 0,
            amount_in: 0,
            amount_out: 0,
            condition: [0; CONDITION_LEN],
            expires_at: 0,
            waiting: false,
            reroutes: 0,
            sent_at: 0,
        };
        let slots = (0..capacity)
            .map(|i| Slot {
                generation: 0,
                state: State::Free,
                data: empty,
                prev: NIL,
                next: if i + 1 < capacity {
                    (i + 1) as u32
                } else {
                    NIL
                },
                bucket: NIL,
            })
            .collect();
        let bucket_count = (horizon_ms / u64::from(tick_ms) + 2).next_power_of_two() as usize;
        let tick_ms = i64::from(tick_ms);
        Pending {
            slots,
            free_head: 0,
            in_use: 0,
            tick_ms,
            buckets: vec![NIL; bucket_count],
            cursor: now.div_euclid(tick_ms),
            expired: vec![NIL; capacity],
            expired_head: 0,
            expired_len: 0,
        }
    }

    /// Slots in use, expired-but-undrained ones included.
    pub fn len(&self) -> usize {
        self.in_use
    }

    /// True when no slot is in use.
    pub fn is_empty(&self) -> bool {
        self.in_use == 0
    }

    /// How many slots there are.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Files a forwarded Prepare; `None` when every slot is taken.
    #[inline]
    pub fn insert(&mut self, data: InFlight) -> Option<SlotId> {
        let index = self.free_head;
        if index == NIL {
            return None;
        }
        let slot = &mut self.slots[index as usize];
        debug_assert_eq!(slot.state, State::Free);
        self.free_head = slot.next;
        slot.state = State::InFlight;
        slot.data = data;
        let generation = slot.generation;
        self.in_use += 1;
        let tick = (data.expires_at + self.tick_ms - 1)
            .div_euclid(self.tick_ms)
            .max(self.cursor + 1);
        self.link(index, tick);
        Some(SlotId { index, generation })
    }

    /// The in-flight Prepare `id`, if it is still waiting for its reply.
    #[inline]
    pub fn get(&self, id: SlotId) -> Option<&InFlight> {
        let slot = self.slots.get(id.index as usize)?;
        (slot.generation == id.generation && slot.state == State::InFlight).then_some(&slot.data)
    }

    /// The in-flight Prepare `id`, to change, if it is still waiting for its reply.
    #[inline]
    pub fn get_mut(&mut self, id: SlotId) -> Option<&mut InFlight> {
        let slot = self.slots.get_mut(id.index as usize)?;
        (slot.generation == id.generation && slot.state == State::InFlight)
            .then_some(&mut slot.data)
    }

    /// Resolves `id` (its reply came): frees the slot and returns what it held. `None` when
    /// the id is unknown, stale, or already expired.
    #[inline]
    pub fn remove(&mut self, id: SlotId) -> Option<InFlight> {
        self.get(id)?;
        self.unlink(id.index);
        Some(self.free(id.index))
    }

    /// Moves every in-flight slot whose expiry is at or before `now` to the expired queue;
    /// returns how many moved. Work is bounded by the ticks passed (at most one wheel turn)
    /// plus the slots visited.
    pub fn expire(&mut self, now: i64) -> usize {
        let now_tick = now.div_euclid(self.tick_ms);
        if now_tick <= self.cursor {
            return 0;
        }
        let turn = self.buckets.len() as i64;
        let first = self.cursor + 1;
        // After a long pause one full turn visits every bucket once.
        let last = now_tick.min(self.cursor + turn);
        let mut moved = 0;
        for tick in first..=last {
            let bucket = (tick as usize) & (self.buckets.len() - 1);
            let mut index = self.buckets[bucket];
            while index != NIL {
                let slot = &self.slots[index as usize];
                let next = slot.next;
                if slot.data.expires_at <= now {
                    self.unlink(index);
                    self.slots[index as usize].state = State::Expired;
                    self.push_expired(index);
                    moved += 1;
                }
                index = next;
            }
        }
        self.cursor = now_tick;
        moved
    }

    /// Takes the next expired Prepare, freeing its slot.
    pub fn pop_expired(&mut self) -> Option<InFlight> {
        if self.expired_len == 0 {
            return None;
        }
        let index = self.expired[self.expired_head];
        self.expired_head = (self.expired_head + 1) % self.expired.len();
        self.expired_len -= 1;
        debug_assert_eq!(self.slots[index as usize].state, State::Expired);
        Some(self.free(index))
    }

    /// The earliest moment [`expire`](Self::expire) could move a slot: the start of the next
    /// tick. The runtime may sleep until then.
    pub fn next_tick_at(&self) -> i64 {
        (self.cursor + 1) * self.tick_ms
    }

    fn push_expired(&mut self, index: u32) {
        // Each slot is queued at most once while it is Expired, so the ring cannot overflow.
        assert!(self.expired_len < self.expired.len());
        let at = (self.expired_head + self.expired_len) % self.expired.len();
        self.expired[at] = index;
        self.expired_len += 1;
    }

    fn free(&mut self, index: u32) -> InFlight {
        let slot = &mut self.slots[index as usize];
        slot.state = State::Free;
        // Generations stay below 2^31, so a packed id's top bit is free for the runtime.
        slot.generation = slot.generation.wrapping_add(1) & GENERATION_MASK;
        slot.prev = NIL;
        slot.bucket = NIL;
        slot.next = self.free_head;
        self.free_head = index;
        self.in_use -= 1;
        slot.data
    }

    fn link(&mut self, index: u32, tick: i64) {
        let bucket = (tick as usize) & (self.buckets.len() - 1);
        let head = self.buckets[bucket];
        if head != NIL {
            self.slots[head as usize].prev = index;
        }
        let slot = &mut self.slots[index as usize];
        slot.prev = NIL;
        slot.next = head;
        slot.bucket = bucket as u32;
        self.buckets[bucket] = index;
    }

    fn unlink(&mut self, index: u32) {
        let (prev, next, bucket) = {
            let slot = &self.slots[index as usize];
            (slot.prev, slot.next, slot.bucket)
        };
        if prev == NIL {
            self.buckets[bucket as usize] = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        }
        let slot = &mut self.slots[index as usize];
        slot.prev = NIL;
        slot.next = NIL;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn entry(tag: u128, expires_at: i64) -> InFlight {
        InFlight {
            from: PeerId(1),
            to: PeerId(2),
            tag,
            amount_in: 10,
            amount_out: 9,
            condition: [tag as u8; 32],
            expires_at,
            waiting: false,
            reroutes: 0,
            sent_at: 0,
        }
    }

    #[test]
    fn full_table_refuses_and_stale_ids_are_ignored() {
        let mut p = Pending::new(2, 5, 30_000, 0);
        let a = p.insert(entry(1, 1000)).unwrap();
        let b = p.insert(entry(2, 1000)).unwrap();
        assert_eq!(p.insert(entry(3, 1000)), None);
        assert_eq!(p.remove(a).unwrap().tag, 1);
        assert_eq!(p.remove(a), None, "resolved twice");
        let c = p.insert(entry(4, 1000)).unwrap();
        assert_eq!(p.get(a), None, "stale generation");
        assert_eq!(p.get(c).unwrap().tag, 4);
        assert_eq!(SlotId::from_u64(b.to_u64()), b);
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn expiry_is_never_early_and_at_most_one_tick_late() {
        let mut p = Pending::new(64, 5, 30_000, 0);
        let ids: Vec<SlotId> = (0..50)
            .map(|i| p.insert(entry(i, 100 + 7 * i as i64)).unwrap())
            .collect();
        let mut expired = Vec::new();
        for now in 0..1000 {
            p.expire(now);
            while let Some(e) = p.pop_expired() {
                assert!(e.expires_at <= now, "early: {} at {now}", e.expires_at);
                assert!(now - e.expires_at < 5, "late: {} at {now}", e.expires_at);
                expired.push(e.tag);
            }
        }
        assert_eq!(expired.len(), 50);
        assert!(ids.iter().all(|&id| p.get(id).is_none()));
        assert!(p.is_empty());
    }

    #[test]
    fn removed_slots_never_expire_and_long_pauses_catch_up() {
        let mut p = Pending::new(8, 5, 1_000, 0);
        let a = p.insert(entry(1, 500)).unwrap();
        let _b = p.insert(entry(2, 900)).unwrap();
        p.remove(a).unwrap();
        // A pause of many wheel turns.
        assert_eq!(p.expire(1_000_000), 1);
        assert_eq!(p.pop_expired().unwrap().tag, 2);
        assert_eq!(p.pop_expired(), None);
        // Entries filed a turn ahead stay until their time.
        let c = p.insert(entry(3, 1_000_000 + 990)).unwrap();
        assert_eq!(p.expire(1_000_000 + 500), 0);
        assert!(p.get(c).is_some());
        assert_eq!(p.expire(1_000_000 + 995), 1);
    }
}
