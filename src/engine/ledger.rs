//! Per-peer balances, two-phase (TigerBeetle's pending/posted, over RFC 32's balance and
//! maximum balance), sharded over cores without locks.
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
//! # Holds larger than a shard's headroom
//!
//! A hold that does not fit what a shard has *now* but might fit the peer's limit waits
//! instead of being refused ([`Ledger::hold_or_wait`] answers [`HoldResult::Wait`]), so a
//! Prepare of any amount up to the peer's headroom is accepted on any core:
//!
//! | where | what it does | how the wait ends |
//! | --- | --- | --- |
//! | remote shard | queues the hold, sends `Request { want, need }` for what its waiters lack | the Grant: waiters that fit are held; if home could not grant `need`, the rest are refused |
//! | home shard, a Request whose `need` does not fit | parks it and sends `Recall` to every other core holding a lease | once every recalled core has answered with a Report, it grants what is available |
//! | home shard, a local hold that does not fit while leases are out | queues the hold and sends `Recall` the same way | once every recalled core has answered: held if it fits, else refused (T04) |
//!
//! A remote shard answers `Recall` at once with a Report that hands back all its unused
//! headroom beyond what its own waiters need. A remote shard that placed no hold for
//! [`IDLE_TICKS`] ticks hands back all its headroom on its own. Every ended wait comes out of
//! [`Ledger::poll_resolved`] exactly once. Waiting holds are not holds: they count nowhere
//! until they are held, and at most [`WAITERS_MAX`] wait on one core (more are refused).
//!
//! # Limits shared by several routers
//!
//! For a peer whose limit is shared with other routers (`shared_limit`), the home shard checks
//! `posted + pending_in + leased` against a *ceiling* instead of `max_balance`: the part of
//! the limit this router holds in the shared store (`crate::cluster`). The ceiling starts at
//! the recovered `posted` (no headroom) and only the cluster agent moves it: up with
//! [`Ledger::raise_ceiling`] once the store has granted it, down with
//! [`Ledger::lower_ceiling`] before the store is told. So the ceiling here never passes what
//! the store holds for this router, and the store keeps the sum of every router's ceilings
//! within `max_balance`. Leases between cores work under the ceiling as they work under
//! `max_balance`.
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
//!
//! Over 800 lines because its tests (among them the seeded multi-core invariant test) live beside
//! the code (the code is under 800).

use crate::id::{CoreId, PeerId};
use core::fmt;
use std::collections::VecDeque;

/// Holds that may wait for headroom on one core at once; more are refused (T04).
pub const WAITERS_MAX: usize = 1024;

/// Ticks without a hold after which a remote shard hands all its headroom back home.
pub const IDLE_TICKS: u32 = 200;

/// The outcome of [`Ledger::hold_or_wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldResult {
    /// Held now.
    Held,
    /// Refused now (T04): over the limit, or too many holds waiting.
    Refused,
    /// Waiting for headroom from other cores; ends in [`Ledger::poll_resolved`].
    Wait,
}

/// A waiting hold that ended: `held` or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The token given to [`Ledger::hold_or_wait`].
    pub token: u64,
    /// Whose balance.
    pub peer: PeerId,
    /// The amount.
    pub amount: u64,
    /// True when the hold is now placed (and must be posted or voided like any other).
    pub held: bool,
}

#[derive(Debug, Clone, Copy)]
struct Waiter {
    peer: PeerId,
    amount: u64,
    token: u64,
}

/// Where a shard writes its `posted_local` per peer (see the module docs). `store` is on the
/// packet path: it must be a few plain stores, never a syscall, a lock or an allocation.
pub trait PostedStore: fmt::Debug {
    /// The value this shard starts with for `peer` (its base after recovery).
    fn load(&self, peer: PeerId) -> i128;
    /// Records the new `posted_local` of `peer`; done when it returns.
    fn store(&mut self, peer: PeerId, value: i128);
    /// Makes room for `peers` peers (a reload added some; see [`Ledger::add_account`]). A
    /// store sized for every slot at start has nothing to do.
    fn grow(&mut self, _peers: usize) {}
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

    fn grow(&mut self, peers: usize) {
        if self.0.len() < peers {
            self.0.resize(peers, 0);
        }
    }
}

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
        /// How much its waiting holds need (0: a plain refill). Home recalls idle leases from
        /// the other cores before it grants less than this.
        need: u64,
    },
    /// Home → remote: hand back your unused headroom now (answered by a Report with
    /// `recall` set).
    Recall,
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
        /// The answer to a Recall.
        recall: bool,
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
    /// Remote: what the outstanding Request asked for as `need`.
    need_outstanding: u64,
    /// Remote: ticks since the last hold.
    idle_ticks: u32,
    /// Sum of the amounts of this peer's waiting holds on this shard.
    waiting: i128,
    /// Home, shared limit: the part of `max_balance` this router holds for the peer (see
    /// "Limits shared by several routers" in the module docs); `max_balance` otherwise.
    ceiling: i128,
    shared: bool,
    /// Home, shared limit: holds refused for want of ceiling (the agent's sign that more is
    /// wanted).
    refused: u64,
    // Home only.
    /// Headroom leased to each core (indexed by core).
    leased_to: Vec<i128>,
    /// Cores whose answer to a Recall is awaited (bit per core).
    recalls: u64,
    /// Requests parked until the recalls are answered: (core, want, need).
    parked: Vec<(CoreId, u64, u64)>,
}

impl Account {
    /// The shard of the peer `c` on `core` of `cores`, whose committed local balance is
    /// `posted_local`.
    fn new(core: CoreId, cores: usize, c: &AccountConfig, posted_local: i128) -> Account {
        Account {
            home: c.home,
            posted_local,
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
            need_outstanding: 0,
            idle_ticks: 0,
            waiting: 0,
            // A shared limit starts with no headroom: the cluster agent grants it.
            ceiling: if c.shared && c.home == core {
                c.posted
            } else {
                i128::from(c.max_balance)
            },
            shared: c.shared,
            refused: 0,
            leased_to: if c.home == core {
                vec![0; cores]
            } else {
                Vec::new()
            },
            recalls: 0,
            parked: Vec::new(),
        }
    }
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
    /// The limit is shared with other routers (`shared_limit`): the home shard holds
    /// `posted + pending_in + leased` under a ceiling the cluster agent sets, not under
    /// `max_balance`.
    pub shared: bool,
}

/// The balance shards of every peer on one core.
#[derive(Debug)]
pub struct Ledger {
    core: CoreId,
    accounts: Vec<Account>,
    store: Box<dyn PostedStore>,
    outbox: Vec<LeaseMessage>,
    outbox_read: usize,
    cores: usize,
    waiters: VecDeque<Waiter>,
    resolved: VecDeque<Resolved>,
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
            .map(|(index, c)| Account::new(core, cores, c, store.load(PeerId(index as u16))))
            .collect();
        // Per peer at once: a Request and a Report (remote), or a Grant and a Recall per other
        // core (home); the outbox is drained by the runtime between batches, and only grows
        // past this if the runtime stops draining it.
        let outbox_cap = accounts.len() * (2 * cores + 2);
        let mut ledger = Ledger {
            core,
            accounts,
            store,
            outbox: Vec::with_capacity(outbox_cap),
            outbox_read: 0,
            cores,
            waiters: VecDeque::new(),
            resolved: VecDeque::new(),
        };
        for index in 0..ledger.accounts.len() {
            let peer = PeerId(index as u16);
            if ledger.accounts[index].home != core {
                ledger.request_lease(peer, 0);
            }
        }
        ledger
    }

    /// A shard for a peer added while the router runs (a reload), at the next index: started
    /// like those of [`with_store`](Self::with_store), its local balance from the store.
    pub fn add_account(&mut self, config: &AccountConfig) -> PeerId {
        let peer = PeerId(u16::try_from(self.accounts.len()).expect("peer ids are 16 bits"));
        self.store.grow(peer.index() + 1);
        let account = Account::new(self.core, self.cores, config, self.store.load(peer));
        let remote = account.home != self.core;
        self.accounts.push(account);
        self.outbox.reserve(2 * self.cores + 2);
        if remote {
            self.request_lease(peer, 0);
        }
        peer
    }

    /// This shard's core.
    pub fn core(&self) -> CoreId {
        self.core
    }

    /// The shard of `peer`.
    pub fn account(&self, peer: PeerId) -> &Account {
        &self.accounts[peer.index()]
    }

    /// Holds `amount` for an incoming Prepare from `peer` with what this shard has now; false
    /// means T04 (no change made). A remote shard running low asks home for more.
    #[inline]
    pub fn hold(&mut self, peer: PeerId, amount: u64) -> bool {
        let held = self.try_hold(peer, amount);
        let account = &self.accounts[peer.index()];
        if account.home != self.core && !account.request_outstanding {
            let threshold = if held {
                account.lease_chunk / 2
            } else {
                account.lease_chunk
            };
            if account.headroom < i128::from(threshold) {
                self.request_lease(peer, 0);
            }
        }
        held
    }

    /// Holds `amount` if this shard has room now; no message is sent.
    #[inline]
    fn try_hold(&mut self, peer: PeerId, amount: u64) -> bool {
        debug_assert!(amount > 0, "zero amounts skip the ledger");
        let a = i128::from(amount);
        let core = self.core;
        let account = &mut self.accounts[peer.index()];
        if account.home == core {
            let after = (account.posted.checked_add(account.pending_in))
                .and_then(|sum| sum.checked_add(account.leased))
                .and_then(|sum| sum.checked_add(a));
            if !matches!(after, Some(total) if total <= account.ceiling) {
                account.refused = account.refused.wrapping_add(u64::from(account.shared));
                return false;
            }
            account.pending_in += a;
        } else {
            account.idle_ticks = 0;
            if a > account.headroom {
                return false;
            }
            account.headroom -= a;
            account.pending_in += a;
        }
        true
    }

    /// Like [`hold`](Self::hold), but a hold that only other cores' headroom could make room
    /// for waits for it (see the module docs) instead of being refused; its end comes out of
    /// [`poll_resolved`](Self::poll_resolved) with `token`.
    pub fn hold_or_wait(&mut self, peer: PeerId, amount: u64, token: u64) -> HoldResult {
        if self.try_hold(peer, amount) {
            if self.accounts[peer.index()].home != self.core {
                let account = &self.accounts[peer.index()];
                let low = account.headroom < i128::from(account.lease_chunk / 2);
                if low && !account.request_outstanding {
                    self.request_lease(peer, 0);
                }
            }
            return HoldResult::Held;
        }
        let core = self.core;
        let a = i128::from(amount);
        let account = &self.accounts[peer.index()];
        if a > account.max_balance || self.waiters.len() >= WAITERS_MAX {
            return HoldResult::Refused;
        }
        if account.home == core {
            // Only headroom leased out can make room, and only if the hold would fit then.
            let without_leases = account.posted.checked_add(account.pending_in + a);
            if !matches!(without_leases, Some(total) if total <= account.ceiling) {
                return HoldResult::Refused;
            }
            let leases_out =
                (0..self.cores).any(|c| c != usize::from(core.0) && account.leased_to[c] > 0);
            if !leases_out && account.recalls == 0 {
                return HoldResult::Refused;
            }
            self.wait(peer, amount, token);
            self.recall(peer, None);
        } else {
            self.wait(peer, amount, token);
            if !self.accounts[peer.index()].request_outstanding {
                self.request_for_waiters(peer);
            }
        }
        HoldResult::Wait
    }

    /// The next waiting hold that ended.
    pub fn poll_resolved(&mut self) -> Option<Resolved> {
        self.resolved.pop_front()
    }

    /// Holds waiting on this core.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    fn wait(&mut self, peer: PeerId, amount: u64, token: u64) {
        self.waiters.push_back(Waiter {
            peer,
            amount,
            token,
        });
        self.accounts[peer.index()].waiting += i128::from(amount);
    }

    /// Holds what fits of `peer`'s waiting holds, oldest first; refuses the others when
    /// `refuse_rest` (nothing more is coming).
    fn serve_waiters(&mut self, peer: PeerId, refuse_rest: bool) {
        let mut index = 0;
        while index < self.waiters.len() {
            let waiter = self.waiters[index];
            if waiter.peer != peer {
                index += 1;
                continue;
            }
            let held = self.try_hold(peer, waiter.amount);
            if !held && !refuse_rest {
                index += 1;
                continue;
            }
            self.waiters.remove(index);
            self.accounts[peer.index()].waiting -= i128::from(waiter.amount);
            self.resolved.push_back(Resolved {
                token: waiter.token,
                peer,
                amount: waiter.amount,
                held,
            });
        }
    }

    /// Remote: asks home for what the waiting holds lack.
    fn request_for_waiters(&mut self, peer: PeerId) {
        let account = &self.accounts[peer.index()];
        let deficit = account.waiting - account.headroom;
        if deficit > 0 {
            // `waiting` is a sum of u64 amounts below WAITERS_MAX of them: clamp to u64.
            let need = u64::try_from(deficit).unwrap_or(u64::MAX);
            self.request_lease(peer, need);
        }
    }

    /// Home: asks every other core holding a lease of `peer` (but `except`) to hand back its
    /// unused headroom; when none is asked, settles what waits at once.
    fn recall(&mut self, peer: PeerId, except: Option<CoreId>) {
        let core = self.core;
        for c in 0..self.cores {
            let account = &mut self.accounts[peer.index()];
            let target = CoreId(c as u16);
            let skip = target == core || Some(target) == except || account.recalls & 1 << c != 0;
            if skip || account.leased_to[c] <= 0 {
                continue;
            }
            account.recalls |= 1 << c;
            self.send(peer, target, LeaseKind::Recall);
        }
        if self.accounts[peer.index()].recalls == 0 {
            self.settle_home(peer);
        }
    }

    /// Home, no recall outstanding: local waiters get what fits (the rest T04), then parked
    /// Requests get what is left.
    fn settle_home(&mut self, peer: PeerId) {
        self.serve_waiters(peer, true);
        let parked = core::mem::take(&mut self.accounts[peer.index()].parked);
        for (to, want, _) in parked {
            self.grant(peer, to, want);
        }
    }

    /// Home: grants `to` up to `want` of what is available.
    fn grant(&mut self, peer: PeerId, to: CoreId, want: u64) {
        let account = &mut self.accounts[peer.index()];
        let used = account.posted + account.pending_in + account.leased;
        let available = (account.ceiling - used).max(0);
        let amount = i128::from(want).min(available);
        account.leased += amount;
        account.leased_to[usize::from(to.0)] += amount;
        // `amount <= want`, so it fits u64.
        self.send(
            peer,
            to,
            LeaseKind::Grant {
                amount: amount as u64,
            },
        );
    }

    /// Posts a hold of `amount` on `peer` after a valid, timely Fulfill.
    #[inline]
    pub fn post_hold(&mut self, peer: PeerId, amount: u64) {
        let core = self.core;
        let account = &mut self.accounts[peer.index()];
        let a = account.end_hold(amount, "post");
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
        let a = account.end_hold(amount, "void");
        if account.home != core {
            account.headroom += a;
        }
    }

    /// Posts an outgoing payment of `amount` to `peer` after its valid, timely Fulfill:
    /// `posted -= amount`. Never refused: no limit is checked at Fulfill time (neither
    /// reference connector can refuse there).
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

    /// Adds a settlement made outside the router to `peer`'s posted balance (negative: the
    /// peer paid us). Home shard only; not stored in this core's row: the settlement journal
    /// is its durable record (`crate::settlements`).
    pub fn settle(&mut self, peer: PeerId, delta: i128) {
        let account = &mut self.accounts[peer.index()];
        assert_eq!(
            account.home, self.core,
            "a settlement goes to the home shard"
        );
        account.posted = account
            .posted
            .checked_add(delta)
            .expect("posted balance overflow");
    }

    /// Home, shared limit: raises the ceiling to `ceiling` (what the cluster agent holds for
    /// the peer in the shared store; never lowered here, see [`lower_ceiling`]).
    ///
    /// [`lower_ceiling`]: Self::lower_ceiling
    pub fn raise_ceiling(&mut self, peer: PeerId, ceiling: i128) {
        let core = self.core;
        let account = &mut self.accounts[peer.index()];
        assert!(
            account.home == core && account.shared,
            "ceiling of a peer not shared here"
        );
        account.ceiling = account.ceiling.max(ceiling);
    }

    /// Home, shared limit: lowers the ceiling towards `target`, never below what is used now
    /// (`posted + pending_in + leased`), and returns the ceiling that holds from now on: the
    /// agent may give back to the shared store everything above it.
    pub fn lower_ceiling(&mut self, peer: PeerId, target: i128) -> i128 {
        let core = self.core;
        let account = &mut self.accounts[peer.index()];
        assert!(
            account.home == core && account.shared,
            "ceiling of a peer not shared here"
        );
        let used = account.posted + account.pending_in + account.leased;
        account.ceiling = account.ceiling.min(target.max(used));
        account.ceiling
    }

    /// Takes a message from another core.
    pub fn handle_lease(&mut self, message: LeaseMessage) {
        assert_eq!(message.to, self.core, "lease message for another core");
        let core = self.core;
        let peer = message.peer;
        let account = &mut self.accounts[peer.index()];
        match message.kind {
            LeaseKind::Request { want, need } => {
                assert_eq!(
                    account.home, core,
                    "lease request to a core that is not home"
                );
                let used = account.posted + account.pending_in + account.leased;
                let available = (account.ceiling - used).max(0);
                if available < i128::from(want) {
                    // Another core wants more than the ceiling leaves: a sign for the cluster
                    // agent, as a refused hold here is.
                    account.refused = account.refused.wrapping_add(u64::from(account.shared));
                }
                if i128::from(need) > available {
                    // Idle leases elsewhere may make room: ask for them first.
                    account.parked.push((message.from, want, need));
                    self.recall(peer, Some(message.from));
                } else {
                    self.grant(peer, message.from, want);
                }
            }
            LeaseKind::Grant { amount } => {
                assert_ne!(account.home, core, "grant to the home core");
                account.headroom += i128::from(amount);
                account.request_outstanding = false;
                let short = amount < account.need_outstanding;
                account.need_outstanding = 0;
                // Less than the waiters needed means home had no more: refuse the rest.
                self.serve_waiters(peer, short);
                let account = &self.accounts[peer.index()];
                if account.waiting > 0 && !account.request_outstanding {
                    self.request_for_waiters(peer);
                }
            }
            LeaseKind::Recall => {
                assert_ne!(account.home, core, "recall to the home core");
                let spare = (account.headroom - account.waiting).max(0);
                self.report(peer, spare, true);
            }
            LeaseKind::Report {
                released,
                posted_in,
                posted_out,
                recall,
            } => {
                assert_eq!(account.home, core, "report to a core that is not home");
                let consumed = i128::from(released) + posted_in as i128;
                let from = usize::from(message.from.0);
                assert!(
                    account.leased >= consumed && account.leased_to[from] >= consumed,
                    "report returns more than was leased"
                );
                account.leased -= consumed;
                account.leased_to[from] -= consumed;
                let posted = (account.posted.checked_add_unsigned(posted_in))
                    .and_then(|p| p.checked_sub_unsigned(posted_out));
                account.posted = posted.expect("posted balance overflow");
                if recall && account.recalls & 1 << from != 0 {
                    account.recalls &= !(1 << from);
                    if account.recalls == 0 {
                        self.settle_home(peer);
                    }
                }
            }
        }
    }

    /// Remote: sends home a Report handing back `released` of headroom with the posts made
    /// since the last one.
    fn report(&mut self, peer: PeerId, released: i128, recall: bool) {
        let account = &mut self.accounts[peer.index()];
        debug_assert!((0..=account.headroom).contains(&released));
        account.headroom -= released;
        let report = LeaseKind::Report {
            // At most the headroom, which grants of u64 amounts built: it fits.
            released: u64::try_from(released).expect("released headroom fits u64"),
            posted_in: core::mem::take(&mut account.posted_in_unreported),
            posted_out: core::mem::take(&mut account.posted_out_unreported),
            recall,
        };
        let home = account.home;
        self.send(peer, home, report);
    }

    /// Periodic work (from the engine's timer): each remote shard reports its posts and hands
    /// back headroom beyond two chunks, or all of it after [`IDLE_TICKS`] ticks without a
    /// hold.
    pub fn handle_tick(&mut self) {
        for index in 0..self.accounts.len() {
            let account = &mut self.accounts[index];
            if account.home == self.core {
                continue;
            }
            account.idle_ticks = account.idle_ticks.saturating_add(1);
            let idle = account.idle_ticks >= IDLE_TICKS && account.waiting == 0;
            let keep = if idle {
                0
            } else {
                2 * i128::from(account.lease_chunk)
            };
            let released = (account.headroom - keep.max(account.waiting)).max(0);
            if released == 0
                && account.posted_in_unreported == 0
                && account.posted_out_unreported == 0
            {
                continue;
            }
            self.report(PeerId(index as u16), released, false);
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

    fn request_lease(&mut self, peer: PeerId, need: u64) {
        let account = &mut self.accounts[peer.index()];
        account.request_outstanding = true;
        account.need_outstanding = need;
        let want = account.lease_chunk.max(need);
        let home = account.home;
        self.send(peer, home, LeaseKind::Request { want, need });
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

    /// Home: `posted + pending_in + leased`, what the ceiling must cover.
    pub fn used(&self) -> i128 {
        self.posted + self.pending_in + self.leased
    }

    /// Home: the ceiling holds are checked against (`max_balance` unless the limit is shared).
    pub fn ceiling(&self) -> i128 {
        self.ceiling
    }

    /// Whether the limit is shared with other routers.
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// Home, shared limit: holds refused so far for want of ceiling.
    pub fn refused(&self) -> u64 {
        self.refused
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

    /// Takes a hold of `amount` placed on this shard out of `pending_in`, for a post or a void
    /// (`action`, named in the panic); returns it as `i128`. Ending more than is held is a bug.
    #[inline]
    fn end_hold(&mut self, amount: u64, action: &str) -> i128 {
        let a = i128::from(amount);
        assert!(
            self.pending_in >= a,
            "{action} of {a} with only {} held",
            self.pending_in
        );
        self.pending_in -= a;
        a
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::engine::test_rng::Rng;

    const PEER: PeerId = PeerId(0);

    fn single(max_balance: u64) -> Ledger {
        let config = AccountConfig {
            home: CoreId(0),
            max_balance,
            lease_chunk: 0,
            posted: 0,
            shared: false,
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
            shared: false,
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

    /// Collects what the shards send: lease messages into `in_flight`, the holds their ended
    /// waits placed into `holds`. Returns how many of those holds are on a core other than the
    /// home (core 0).
    fn drain(
        shards: &mut [Ledger],
        in_flight: &mut Vec<LeaseMessage>,
        holds: &mut [Vec<u64>],
    ) -> u64 {
        let mut granted = 0;
        for (c, shard) in shards.iter_mut().enumerate() {
            while let Some(m) = shard.poll_lease() {
                in_flight.push(m);
            }
            while let Some(r) = shard.poll_resolved() {
                if r.held {
                    holds[c].push(r.amount);
                    granted += u64::from(c != 0);
                }
            }
        }
        granted
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
            shared: false,
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
                0..=2 => {
                    let amount = 1 + rng.below(lease_chunk.max(4) * 2);
                    if shards[core].hold(PEER, amount) {
                        holds[core].push(amount);
                        granted_holds += u64::from(core != 0);
                    }
                }
                3 => {
                    // Sometimes far more than a chunk: it waits for other cores' headroom.
                    let amount = 1 + rng.below(max_balance.max(2));
                    if shards[core].hold_or_wait(PEER, amount, step as u64) == HoldResult::Held {
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
            granted_holds += drain(&mut shards, &mut in_flight, &mut holds);
            check(&shards, &in_flight, max_balance, seed, step);
        }
        // Quiescence: every message delivered, every wait ended.
        while !in_flight.is_empty() {
            let m = in_flight.swap_remove(0);
            shards[usize::from(m.to.0)].handle_lease(m);
            drain(&mut shards, &mut in_flight, &mut holds);
            check(&shards, &in_flight, max_balance, seed, steps);
        }
        for (c, shard) in shards.iter().enumerate() {
            assert_eq!(
                shard.waiting(),
                0,
                "seed {seed}: core {c} still has holds waiting"
            );
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
                    ..
                } => {
                    true_posted += posted_in as i128 - posted_out as i128;
                    leased_accounted += i128::from(released) + posted_in as i128;
                }
                LeaseKind::Request { .. } | LeaseKind::Recall => {}
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

    /// Delivers every message until none is left; returns what each core resolved.
    fn settle(shards: &mut [Ledger]) -> Vec<Vec<Resolved>> {
        let mut resolved = vec![Vec::new(); shards.len()];
        loop {
            let mut mail = Vec::new();
            for shard in shards.iter_mut() {
                while let Some(m) = shard.poll_lease() {
                    mail.push(m);
                }
            }
            for (c, shard) in shards.iter_mut().enumerate() {
                while let Some(r) = shard.poll_resolved() {
                    resolved[c].push(r);
                }
            }
            if mail.is_empty() {
                return resolved;
            }
            for m in mail {
                shards[usize::from(m.to.0)].handle_lease(m);
            }
        }
    }

    fn shards(cores: usize, max_balance: u64) -> Vec<Ledger> {
        let config = [AccountConfig {
            home: CoreId(0),
            max_balance,
            lease_chunk: 0,
            posted: 0,
            shared: false,
        }];
        (0..cores)
            .map(|c| Ledger::new(CoreId(c as u16), cores, &config))
            .collect()
    }

    #[test]
    fn a_hold_of_the_whole_limit_fits_on_every_core() {
        for cores in [2usize, 3, 8] {
            let mut shards = shards(cores, 1000);
            settle(&mut shards);
            for core in (0..cores).rev() {
                // Every core holds its first chunk: the whole limit is spread out.
                let result = shards[core].hold_or_wait(PEER, 1000, 7);
                let resolved = settle(&mut shards);
                let held = result == HoldResult::Held
                    || resolved[core]
                        == [Resolved {
                            token: 7,
                            peer: PEER,
                            amount: 1000,
                            held: true,
                        }];
                assert!(
                    held,
                    "{cores} cores: 1000 on core {core}: {result:?} {resolved:?}"
                );
                assert!(
                    !shards[core].hold_or_wait(PEER, 1, 8).eq(&HoldResult::Held)
                        && settle(&mut shards)[core].iter().all(|r| !r.held),
                    "nothing is left for a second hold"
                );
                shards[core].void_hold(PEER, 1000);
                // The other cores take their chunks again, as traffic would.
                for other in shards.iter_mut().skip(1) {
                    other.hold(PEER, 1);
                }
                let _ = settle(&mut shards);
                for other in shards.iter_mut().skip(1) {
                    if other.account(PEER).pending_in() > 0 {
                        other.void_hold(PEER, 1);
                    }
                }
                let _ = settle(&mut shards);
            }
        }
    }

    #[test]
    fn a_hold_over_the_limit_is_refused_at_once_and_waiters_are_bounded() {
        let mut shards = shards(2, 1000);
        settle(&mut shards);
        assert_eq!(shards[1].hold_or_wait(PEER, 1001, 1), HoldResult::Refused);
        assert_eq!(shards[0].hold_or_wait(PEER, 1001, 1), HoldResult::Refused);
        // Held elsewhere: a remote's wait ends refused once home has nothing more.
        assert_eq!(shards[0].hold_or_wait(PEER, 500, 2), HoldResult::Held);
        assert_eq!(shards[1].hold_or_wait(PEER, 600, 3), HoldResult::Wait);
        let resolved = settle(&mut shards);
        assert_eq!(
            resolved[1],
            [Resolved {
                token: 3,
                peer: PEER,
                amount: 600,
                held: false
            }]
        );
        for token in 0..WAITERS_MAX as u64 {
            assert_eq!(shards[1].hold_or_wait(PEER, 600, token), HoldResult::Wait);
        }
        assert_eq!(
            shards[1].hold_or_wait(PEER, 600, 0),
            HoldResult::Refused,
            "bounded"
        );
        let resolved = settle(&mut shards);
        assert_eq!(resolved[1].len(), WAITERS_MAX);
        assert_eq!(shards[1].waiting(), 0);
    }

    #[test]
    fn idle_headroom_flows_home() {
        let mut shards = shards(2, 1600);
        settle(&mut shards);
        assert_eq!(shards[1].account(PEER).headroom(), 100, "one chunk");
        for _ in 0..IDLE_TICKS {
            shards[1].handle_tick();
        }
        settle(&mut shards);
        assert_eq!(shards[1].account(PEER).headroom(), 0);
        assert_eq!(shards[0].account(PEER).leased(), 0);
        assert!(
            shards[0].hold(PEER, 1600),
            "home can use the whole limit without a recall"
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

    #[test]
    fn a_shared_limit_holds_to_the_ceiling_the_agent_sets() {
        let config = [AccountConfig {
            home: CoreId(0),
            max_balance: 1000,
            lease_chunk: 50,
            posted: 30,
            shared: true,
        }];
        let alice = PeerId(0);
        let mut home = Ledger::new(CoreId(0), 2, &config);
        let mut remote = Ledger::new(CoreId(1), 2, &config);
        // No headroom until the agent grants some: the ceiling starts at the posted balance.
        assert_eq!(home.account(alice).ceiling(), 30);
        assert!(!home.hold(alice, 1));
        assert_eq!(
            home.account(alice).refused(),
            1,
            "the agent's sign that more is wanted"
        );
        home.raise_ceiling(alice, 130);
        assert!(home.hold(alice, 60));
        // The remote core asked for a chunk at start: it gets what the ceiling leaves.
        while let Some(m) = remote.poll_lease() {
            home.handle_lease(m);
        }
        while let Some(m) = home.poll_lease() {
            remote.handle_lease(m);
        }
        assert_eq!(
            remote.account(alice).headroom(),
            40,
            "130 - 30 posted - 60 held"
        );
        assert!(!remote.hold(alice, 41));
        assert!(remote.hold(alice, 40));
        assert_eq!(home.account(alice).used(), 130);
        // Lowering never goes below what is in use; raising never lowers.
        assert_eq!(home.lower_ceiling(alice, 0), 130);
        home.raise_ceiling(alice, 100);
        assert_eq!(home.account(alice).ceiling(), 130);
        home.void_hold(alice, 60);
        assert_eq!(home.lower_ceiling(alice, 0), 70, "30 posted + 40 leased");
        // A remote request the ceiling cannot meet is counted too.
        let before = home.account(alice).refused();
        home.handle_lease(LeaseMessage {
            peer: alice,
            from: CoreId(1),
            to: CoreId(0),
            kind: LeaseKind::Request { want: 50, need: 0 },
        });
        assert_eq!(home.account(alice).refused(), before + 1);
    }
}
