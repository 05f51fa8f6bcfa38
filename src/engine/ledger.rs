//! Per-peer balances, two-phase (TigerBeetle's pending/posted; `spec/connector-rules.md` §7
//! Adopt), sharded over cores without locks.
//!
//! # Sign and phases
//!
//! `posted` is what the peer owes us (RFC 32's sign: positive means the peer owes us, negative
//! means we owe it). An incoming Prepare of `a` *holds* `a` (`pending_in += a`) if
//! `posted + pending_in + a <= max_balance`, else T04; a valid, timely Fulfill *posts* it
//! (`pending_in -= a; posted += a`); a Reject or an expiry *voids* it (`pending_in -= a`). On
//! the outgoing peer, a valid Fulfill of `b` posts `posted -= b`; nothing is held or checked on
//! the outgoing side. Zero amounts skip balance work (the engine never calls in for them).
//!
//! # Shards and leases
//!
//! Every peer has a home core whose shard holds the authoritative `posted`. Another core that
//! forwards for the peer works against a *lease*: headroom granted by the home shard in chunks,
//! spent by holds, given back by voids. No lock and no shared atomic is touched per packet;
//! shards talk only by [`LeaseMessage`], which the runtime carries between cores (in any order,
//! with any delay). Posts made on a remote shard are reported home in batches.
//!
//! The invariant, for every peer and at every moment, messages in flight included:
//!
//! ```text
//! home.posted + home.pending_in + home.leased <= max_balance        (checked when it grows)
//! Σ remote (headroom + pending_in + posted_in_unreported)  <=  home.leased
//! ```
//!
//! so the true posted balance plus every hold on every core never passes `max_balance`.
//! A Grant in flight has already left `home.leased` raised; a Report in flight has already
//! lowered the remote's side. Both are on the safe side.
//!
//! Money math is `checked_*`: a hold whose sum would overflow is refused like one over the
//! limit; a post or void that would overflow is a broken invariant and panics.
//!
//! # Durability
//!
//! Leases and reports move *headroom* and the home shard's view of `posted`; they never carry
//! durability. Each shard also keeps `posted_local`: the net of every post it committed itself
//! (home or not, incoming `+a` and outgoing `-b`), plus the base it was started with. Every post
//! writes the new `posted_local` into the shard's [`PostedStore`] before it returns, so before
//! the engine hands back a `Reply::Fulfill` to relay. The durable balance of a peer is
//!
//! ```text
//! posted(peer) = Σ over cores  posted_local(core, peer)
//! ```
//!
//! which needs no message between cores before a Fulfill is relayed. The runtime backs the
//! store with memory-mapped rows (`crate::state`); tests and benches use [`MemoryStore`].
//! Holds are never stored: after a crash they are simply gone, i.e. released.

use super::PeerId;
use core::fmt;

/// Where a shard writes its `posted_local` per peer (see the module docs). `store` is on the
/// packet path: it must be a few plain stores, never a syscall, a lock or an allocation.
pub trait PostedStore: fmt::Debug {
    /// The value this shard starts with for `peer` (its base after recovery).
    fn load(&self, peer: PeerId) -> i128;
    /// Records the new `posted_local` of `peer`; done when it returns.
    fn store(&mut self, peer: PeerId, value: i128);
}

/// A [`PostedStore`] in plain memory: balances last as long as the process.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore(pub Vec<i128>);

impl PostedStore for MemoryStore {
    fn load(&self, peer: PeerId) -> i128 {
        self.0.get(peer.index()).copied().unwrap_or(0)
    }

    #[inline]
    fn store(&mut self, peer: PeerId, value: i128) {
        self.0[peer.index()] = value;
    }
}

/// A core's index among the router's cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoreId(pub u16);

/// A message between the shards of one peer's balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseMessage {
    /// Whose balance.
    pub peer: PeerId,
    /// The sending core.
    pub from: CoreId,
    /// The receiving core.
    pub to: CoreId,
    /// What it says.
    pub kind: LeaseKind,
}

/// The three lease messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    /// Remote → home: please grant up to `want` of headroom.
    Request {
        /// How much the remote would like.
        want: u64,
    },
    /// Home → remote: `amount` of headroom is yours (possibly 0).
    Grant {
        /// How much was granted.
        amount: u64,
    },
    /// Remote → home: headroom handed back, and posts made since the last report.
    Report {
        /// Unused headroom returned.
        released: u64,
        /// Incoming holds posted on the remote (they consumed leased headroom).
        posted_in: u128,
        /// Outgoing Fulfills posted on the remote (`posted -= b`).
        posted_out: u128,
    },
}

/// One peer's balance as a shard sees it.
#[derive(Debug, Clone)]
pub struct Account {
    home: CoreId,
    max_balance: i128,
    /// Sum of holds placed on this shard and not yet posted or voided.
    pending_in: i128,
    /// Net posts committed on this shard, plus its base (see Durability).
    posted_local: i128,
    // Home only.
    posted: i128,
    leased: i128,
    // Remote only.
    headroom: i128,
    posted_in_unreported: u128,
    posted_out_unreported: u128,
    request_outstanding: bool,
    lease_chunk: u64,
}

/// Limits and lease sizes of one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountConfig {
    /// The core whose shard is authoritative.
    pub home: CoreId,
    /// How much the peer may owe us: holds plus posted.
    pub max_balance: u64,
    /// Headroom a remote shard asks for at a time; 0 picks `max_balance / 16` (at least 1).
    pub lease_chunk: u64,
    /// The posted balance at start (recovered from the state file, else 0).
    pub posted: i128,
}

/// The balance shards of every peer on one core.
#[derive(Debug)]
pub struct Ledger {
    core: CoreId,
    accounts: Vec<Account>,
    store: Box<dyn PostedStore>,
    outbox: Vec<LeaseMessage>,
    outbox_read: usize,
}

impl Ledger {
    /// Shards for every peer (indexed by [`PeerId`]) on `core`. A remote shard starts with no
    /// headroom and queues a Request for its first chunk.
    pub fn new(core: CoreId, cores: usize, peers: &[AccountConfig]) -> Self {
        let store = MemoryStore(vec![0; peers.len()]);
        Ledger::with_store(core, cores, peers, Box::new(store))
    }

    /// Like [`new`](Self::new), with `posted_local` kept in `store` (and started from it).
    pub fn with_store(
        core: CoreId,
        cores: usize,
        peers: &[AccountConfig],
        store: Box<dyn PostedStore>,
    ) -> Self {
        assert!(
            cores >= 1 && usize::from(core.0) < cores,
            "core {core:?} of {cores}"
        );
        let accounts: Vec<Account> = peers
            .iter()
            .enumerate()
            .map(|(index, c)| Account {
                home: c.home,
                posted_local: store.load(PeerId(index as u16)),
                max_balance: i128::from(c.max_balance),
                pending_in: 0,
                posted: if c.home == core { c.posted } else { 0 },
                leased: 0,
                headroom: 0,
                posted_in_unreported: 0,
                posted_out_unreported: 0,
                request_outstanding: false,
                lease_chunk: if c.lease_chunk > 0 {
                    c.lease_chunk
                } else {
                    (c.max_balance / 16).max(1)
                },
            })
            .collect();
        // Every peer can have one Request or Report per tick and one Grant per remote core in
        // the outbox at once; the outbox is drained by the runtime between batches.
        let outbox_cap = accounts.len() * (cores + 2);
        let mut ledger = Ledger {
            core,
            accounts,
            store,
            outbox: Vec::with_capacity(outbox_cap),
            outbox_read: 0,
        };
        for index in 0..ledger.accounts.len() {
            let peer = PeerId(index as u16);
            if ledger.accounts[index].home != core {
                ledger.request_lease(peer);
            }
        }
        ledger
    }

    /// This shard's core.
    pub fn core(&self) -> CoreId {
        self.core
    }

    /// The shard of `peer`.
    pub fn account(&self, peer: PeerId) -> &Account {
        &self.accounts[peer.index()]
    }

    /// Holds `amount` for an incoming Prepare from `peer`; false means T04 (no change made).
    #[inline]
    pub fn hold(&mut self, peer: PeerId, amount: u64) -> bool {
        debug_assert!(amount > 0, "zero amounts skip the ledger");
        let a = i128::from(amount);
        let core = self.core;
        let account = &mut self.accounts[peer.index()];
        if account.home == core {
            let after = (account.posted.checked_add(account.pending_in))
                .and_then(|sum| sum.checked_add(account.leased))
                .and_then(|sum| sum.checked_add(a));
            if !matches!(after, Some(total) if total <= account.max_balance) {
                return false;
            }
            account.pending_in += a;
        } else {
            if a > account.headroom {
                let low = account.headroom < i128::from(account.lease_chunk);
                if low && !account.request_outstanding {
                    self.request_lease(peer);
                }
                return false;
            }
            account.headroom -= a;
            account.pending_in += a;
            let low = account.headroom < i128::from(account.lease_chunk / 2);
            if low && !account.request_outstanding {
                self.request_lease(peer);
            }
        }
        true
    }

    /// Posts a hold of `amount` on `peer` after a valid, timely Fulfill.
    #[inline]
    pub fn post_hold(&mut self, peer: PeerId, amount: u64) {
        let core = self.core;
        let account = &mut self.accounts[peer.index()];
        let a = i128::from(amount);
        assert!(
            account.pending_in >= a,
            "post of {a} with only {} held",
            account.pending_in
        );
        account.pending_in -= a;
        if account.home == core {
            account.posted = account
                .posted
                .checked_add(a)
                .expect("posted balance overflow");
        } else {
            account.posted_in_unreported += u128::from(amount);
        }
        account.posted_local = (account.posted_local.checked_add(a)).expect("posted overflow");
        self.store.store(peer, account.posted_local);
    }

    /// Voids a hold of `amount` on `peer` (Reject, expiry, bad fulfillment).
    #[inline]
    pub fn void_hold(&mut self, peer: PeerId, amount: u64) {
        let core = self.core;
        let account = &mut self.accounts[peer.index()];
        let a = i128::from(amount);
        assert!(
            account.pending_in >= a,
            "void of {a} with only {} held",
            account.pending_in
        );
        account.pending_in -= a;
        if account.home != core {
            account.headroom += a;
        }
    }

    /// Posts an outgoing payment of `amount` to `peer` after its valid, timely Fulfill:
    /// `posted -= amount`. Never refused (`spec` §7: no limit is checked at Fulfill time).
    #[inline]
    pub fn post_outgoing(&mut self, peer: PeerId, amount: u64) {
        let core = self.core;
        let account = &mut self.accounts[peer.index()];
        if account.home == core {
            account.posted = account
                .posted
                .checked_sub(i128::from(amount))
                .expect("posted underflow");
        } else {
            account.posted_out_unreported += u128::from(amount);
        }
        let local = account.posted_local.checked_sub(i128::from(amount));
        account.posted_local = local.expect("posted underflow");
        self.store.store(peer, account.posted_local);
    }

    /// Takes a message from another core.
    pub fn handle_lease(&mut self, message: LeaseMessage) {
        assert_eq!(message.to, self.core, "lease message for another core");
        let core = self.core;
        let peer = message.peer;
        let account = &mut self.accounts[peer.index()];
        match message.kind {
            LeaseKind::Request { want } => {
                assert_eq!(
                    account.home, core,
                    "lease request to a core that is not home"
                );
                let used = account.posted + account.pending_in + account.leased;
                let available = (account.max_balance - used).max(0);
                let amount = i128::from(want).min(available);
                account.leased += amount;
                // `amount <= want`, so it fits u64.
                let grant = LeaseKind::Grant {
                    amount: amount as u64,
                };
                self.send(peer, message.from, grant);
            }
            LeaseKind::Grant { amount } => {
                assert_ne!(account.home, core, "grant to the home core");
                account.headroom += i128::from(amount);
                account.request_outstanding = false;
            }
            LeaseKind::Report {
                released,
                posted_in,
                posted_out,
            } => {
                assert_eq!(account.home, core, "report to a core that is not home");
                let consumed = i128::from(released) + posted_in as i128;
                assert!(
                    account.leased >= consumed,
                    "report returns more than was leased"
                );
                account.leased -= consumed;
                let posted = (account.posted.checked_add_unsigned(posted_in))
                    .and_then(|p| p.checked_sub_unsigned(posted_out));
                account.posted = posted.expect("posted balance overflow");
            }
        }
    }

    /// Periodic work (from the engine's timer): each remote shard reports its posts and hands
    /// back headroom beyond two chunks.
    pub fn handle_tick(&mut self) {
        for index in 0..self.accounts.len() {
            let account = &mut self.accounts[index];
            if account.home == self.core {
                continue;
            }
            let surplus = account.headroom - 2 * i128::from(account.lease_chunk);
            let released = surplus.max(0);
            if released == 0
                && account.posted_in_unreported == 0
                && account.posted_out_unreported == 0
            {
                continue;
            }
            account.headroom -= released;
            let report = LeaseKind::Report {
                released: released as u64,
                posted_in: core::mem::take(&mut account.posted_in_unreported),
                posted_out: core::mem::take(&mut account.posted_out_unreported),
            };
            let home = account.home;
            self.send(PeerId(index as u16), home, report);
        }
    }

    /// The next message for another core, if any.
    pub fn poll_lease(&mut self) -> Option<LeaseMessage> {
        let message = self.outbox.get(self.outbox_read).copied();
        match message {
            Some(_) => self.outbox_read += 1,
            None => {
                self.outbox.clear();
                self.outbox_read = 0;
            }
        }
        message
    }

    fn request_lease(&mut self, peer: PeerId) {
        let account = &mut self.accounts[peer.index()];
        account.request_outstanding = true;
        let want = account.lease_chunk;
        let home = account.home;
        self.send(peer, home, LeaseKind::Request { want });
    }

    fn send(&mut self, peer: PeerId, to: CoreId, kind: LeaseKind) {
        // Bounded: see the capacity in `new`. Growing here would mean the runtime stopped
        // draining, which is a bug in the runtime.
        debug_assert!(
            self.outbox.len() < self.outbox.capacity(),
            "lease outbox full"
        );
        self.outbox.push(LeaseMessage {
            peer,
            from: self.core,
            to,
            kind,
        });
    }
}

impl Account {
    /// The core whose shard is authoritative.
    pub fn home(&self) -> CoreId {
        self.home
    }

    /// Holds placed on this shard.
    pub fn pending_in(&self) -> i128 {
        self.pending_in
    }

    /// Home: the posted balance as known here (remote posts arrive with reports).
    pub fn posted(&self) -> i128 {
        self.posted
    }

    /// Net posts committed on this shard plus its base: this core's part of the durable
    /// balance (see Durability in the module docs).
    pub fn posted_local(&self) -> i128 {
        self.posted_local
    }

    /// Home: headroom currently leased to other cores.
    pub fn leased(&self) -> i128 {
        self.leased
    }

    /// Remote: unspent leased headroom.
    pub fn headroom(&self) -> i128 {
        self.headroom
    }

    /// Remote: incoming posts not yet reported home.
    pub fn posted_in_unreported(&self) -> u128 {
        self.posted_in_unreported
    }

    /// Remote: outgoing posts not yet reported home.
    pub fn posted_out_unreported(&self) -> u128 {
        self.posted_out_unreported
    }

    /// The limit.
    pub fn max_balance(&self) -> i128 {
        self.max_balance
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const PEER: PeerId = PeerId(0);

    fn single(max_balance: u64) -> Ledger {
        let config = AccountConfig {
            home: CoreId(0),
            max_balance,
            lease_chunk: 0,
            posted: 0,
        };
        Ledger::new(CoreId(0), 1, &[config])
    }

    #[test]
    fn two_phase_on_the_home_shard() {
        let mut l = single(100);
        assert!(l.hold(PEER, 60));
        assert!(!l.hold(PEER, 41), "60 + 41 > 100");
        assert!(l.hold(PEER, 40));
        l.void_hold(PEER, 40);
        l.post_hold(PEER, 60);
        let a = l.account(PEER);
        assert_eq!((a.posted(), a.pending_in()), (60, 0));
        l.post_outgoing(PEER, 100);
        assert_eq!(l.account(PEER).posted(), -40);
        assert!(l.hold(PEER, 140), "prepaid headroom counts");
        assert!(!l.hold(PEER, 1));
        assert_eq!(l.poll_lease(), None, "one core sends nothing");
    }

    #[test]
    fn posts_reach_the_store_and_sum_over_cores() {
        let configs = [AccountConfig {
            home: CoreId(0),
            max_balance: 1000,
            lease_chunk: 100,
            posted: 7,
        }];
        let mut home = Ledger::with_store(CoreId(0), 2, &configs, Box::new(MemoryStore(vec![7])));
        let mut remote = Ledger::new(CoreId(1), 2, &configs);
        while let Some(m) = remote.poll_lease() {
            home.handle_lease(m);
        }
        while let Some(m) = home.poll_lease() {
            remote.handle_lease(m);
        }
        assert!(home.hold(PEER, 10) && remote.hold(PEER, 20));
        home.post_hold(PEER, 10);
        remote.post_hold(PEER, 20);
        remote.post_outgoing(PEER, 5);
        assert!(remote.hold(PEER, 50), "holds are never stored");
        let durable = home.account(PEER).posted_local() + remote.account(PEER).posted_local();
        assert_eq!(durable, 7 + 10 + 20 - 5, "no report was needed");
        assert!(
            format!("{:?}", remote.store).contains("[15]"),
            "the remote stored 20 - 5"
        );
    }

    #[test]
    fn holds_never_overflow_into_acceptance() {
        let mut l = single(u64::MAX);
        assert!(l.hold(PEER, u64::MAX));
        assert!(!l.hold(PEER, u64::MAX));
    }

    /// A fixed xorshift stream, so a failing seed reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Shards on several cores, messages delivered in random order with random delays, random
    /// holds, posts, voids and outgoing posts. After every step: the true posted balance plus
    /// every hold on every core never passes `max_balance`, and leased headroom is conserved.
    fn run_shards(seed: u64, cores: usize, max_balance: u64, lease_chunk: u64, steps: usize) {
        let mut rng = Rng(seed | 1);
        let config = [AccountConfig {
            home: CoreId(0),
            max_balance,
            lease_chunk,
            posted: 0,
        }];
        let mut shards: Vec<Ledger> = (0..cores)
            .map(|c| Ledger::new(CoreId(c as u16), cores, &config))
            .collect();
        let mut in_flight: Vec<LeaseMessage> = Vec::new();
        for shard in shards.iter_mut() {
            while let Some(m) = shard.poll_lease() {
                in_flight.push(m);
            }
        }
        let mut holds: Vec<Vec<u64>> = vec![Vec::new(); cores];
        let mut granted_holds = 0u64;
        for step in 0..steps {
            let core = rng.below(cores as u64) as usize;
            match rng.below(10) {
                0..=3 => {
                    let amount = 1 + rng.below(lease_chunk.max(4) * 2);
                    if shards[core].hold(PEER, amount) {
                        holds[core].push(amount);
                        granted_holds += u64::from(core != 0);
                    }
                }
                4 | 5 if !holds[core].is_empty() => {
                    let i = rng.below(holds[core].len() as u64) as usize;
                    let amount = holds[core].swap_remove(i);
                    shards[core].post_hold(PEER, amount);
                }
                6 if !holds[core].is_empty() => {
                    let i = rng.below(holds[core].len() as u64) as usize;
                    let amount = holds[core].swap_remove(i);
                    shards[core].void_hold(PEER, amount);
                }
                7 => shards[core].post_outgoing(PEER, rng.below(lease_chunk.max(4))),
                8 => shards[core].handle_tick(),
                _ if !in_flight.is_empty() => {
                    let i = rng.below(in_flight.len() as u64) as usize;
                    let m = in_flight.swap_remove(i);
                    shards[usize::from(m.to.0)].handle_lease(m);
                }
                _ => {}
            }
            for shard in shards.iter_mut() {
                while let Some(m) = shard.poll_lease() {
                    in_flight.push(m);
                }
            }
            check(&shards, &in_flight, max_balance, seed, step);
        }
        assert!(
            granted_holds > 0,
            "seed {seed}: no hold on a remote core ever succeeded"
        );
    }

    fn check(
        shards: &[Ledger],
        in_flight: &[LeaseMessage],
        max_balance: u64,
        seed: u64,
        step: usize,
    ) {
        let home = shards[0].account(PEER);
        let mut true_posted = home.posted();
        let mut holds = home.pending_in();
        let mut leased_accounted = 0i128;
        for shard in &shards[1..] {
            let a = shard.account(PEER);
            holds += a.pending_in();
            true_posted += a.posted_in_unreported() as i128 - a.posted_out_unreported() as i128;
            leased_accounted += a.headroom() + a.pending_in() + a.posted_in_unreported() as i128;
        }
        for m in in_flight {
            match m.kind {
                LeaseKind::Grant { amount } => leased_accounted += i128::from(amount),
                LeaseKind::Report {
                    released,
                    posted_in,
                    posted_out,
                } => {
                    true_posted += posted_in as i128 - posted_out as i128;
                    leased_accounted += i128::from(released) + posted_in as i128;
                }
                LeaseKind::Request { .. } => {}
            }
        }
        assert_eq!(
            leased_accounted,
            home.leased(),
            "seed {seed} step {step}: leased headroom not conserved"
        );
        let exposure = home.posted() + home.pending_in() + home.leased();
        assert!(
            exposure <= i128::from(max_balance),
            "seed {seed} step {step}: home over its limit"
        );
        // The property that matters: what the peer truly owes plus every hold on every core.
        assert!(
            true_posted + holds <= i128::from(max_balance),
            "seed {seed} step {step}: posted {true_posted} + holds {holds} > {max_balance}"
        );
    }

    #[test]
    fn concurrent_shards_never_pass_max_balance() {
        for seed in 1..=300u64 {
            let cores = 2 + (seed % 3) as usize;
            let max_balance = [100, 1000, 7, 1_000_000][(seed % 4) as usize];
            let chunk = [0, 1, 10, 333][(seed / 4 % 4) as usize];
            run_shards(seed, cores, max_balance, chunk, 2000);
        }
    }
}
