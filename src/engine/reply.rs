//! The answer path of a forwarded Prepare: the next hop's Fulfill or Reject
//! ([`Engine::handle_reply`]), its failure ([`Engine::handle_failure`]), or the expiry wheel
//! ([`Engine::poll_expired`]). Each resolves the in-flight entry exactly once, and posts or
//! voids its holds; a reply for an entry already resolved is dropped, never credited.

use super::stats::{code_index, INCOMING, OUTGOING};
use super::{Counters, Engine, InFlight, PeerId, RejectReason, SlotId, Tag, WAITERS_MAX};
use crate::wire::{ErrorCode, Packet};
use sha2::{Digest, Sha256};

/// What to send back to the incoming peer once a forwarded Prepare is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Relay the next hop's Fulfill: the first `len` bytes of the reply, unchanged. Balances
    /// are already committed.
    Fulfill {
        /// The incoming peer.
        to: PeerId,
        /// The runtime's handle for the incoming request.
        tag: Tag,
        /// Bytes to relay.
        len: usize,
    },
    /// Relay the next hop's Reject: the first `len` bytes of the reply, unchanged.
    Relay {
        /// The incoming peer.
        to: PeerId,
        /// The runtime's handle for the incoming request.
        tag: Tag,
        /// Bytes to relay.
        len: usize,
    },
    /// Answer with a local Reject.
    Reject {
        /// The incoming peer.
        to: PeerId,
        /// The runtime's handle for the incoming request.
        tag: Tag,
        /// Why.
        reason: RejectReason,
    },
    /// Nothing to send: the slot is unknown, stale or already answered (a late reply).
    Drop,
}

/// A Prepare whose next hop did not answer in time: answer `to` with R00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// The incoming peer.
    pub to: PeerId,
    /// The runtime's handle for the incoming request.
    pub tag: Tag,
    /// Always [`RejectReason::TimedOut`].
    pub reason: RejectReason,
    /// The in-flight entry as it was.
    pub entry: InFlight,
}

impl Engine {
    /// Takes the next hop's reply (an ILP Fulfill or Reject) for `slot`.
    #[inline]
    pub fn handle_reply(&mut self, now: i64, slot: SlotId, packet: &[u8]) -> Reply {
        let Some(entry) = self.pending.get(slot).copied() else {
            self.counters.late_replies += 1;
            return Reply::Drop;
        };
        if entry.waiting {
            // Never sent: no reply can be for it.
            self.counters.late_replies += 1;
            return Reply::Drop;
        }
        self.pending_by_peer[entry.from.index()] -= 1;
        self.clock = now;
        if now >= entry.expires_at {
            // Late, though the wheel has not fired yet: expire now, never credit.
            self.pending.remove(slot);
            self.backends.resolved(entry.to, Some(true), now);
            self.counters.late_replies += 1;
            return self.resolve_failed(entry, RejectReason::TimedOut);
        }
        match Packet::new_checked(packet) {
            Ok(Packet::Fulfill(fulfill)) => {
                let digest: [u8; 32] = Sha256::digest(fulfill.fulfillment()).into();
                if digest != entry.condition {
                    self.pending.remove(slot);
                    self.backends.resolved(entry.to, Some(true), now);
                    self.counters.wrong_fulfillments += 1;
                    return self.resolve_failed(entry, RejectReason::WrongCondition);
                }
                self.pending.remove(slot);
                self.backends.resolved(entry.to, Some(false), now);
                // The outgoing peer's row first: a crash between the two stores then leaves
                // what the upstream believes (it has no Fulfill yet), at our expense.
                if entry.amount_out > 0 {
                    self.ledger.post_outgoing(entry.to, entry.amount_out);
                }
                if entry.amount_in > 0 {
                    self.ledger.post_hold(entry.from, entry.amount_in);
                }
                self.counters.fulfilled += 1;
                let out = &mut self.stats[entry.to.index()];
                out.fulfills[OUTGOING] += 1;
                out.amount[OUTGOING] += u128::from(entry.amount_out);
                out.round_trip(u64::try_from(now - entry.sent_at).unwrap_or(0));
                let from = &mut self.stats[entry.from.index()];
                from.fulfills[INCOMING] += 1;
                from.amount[INCOMING] += u128::from(entry.amount_in);
                Reply::Fulfill {
                    to: entry.from,
                    tag: entry.tag,
                    len: fulfill.as_bytes().len(),
                }
            }
            Ok(Packet::Reject(reject)) => {
                self.pending.remove(slot);
                // The codes that say the backend itself is unwell (outlier detection).
                let code = reject.code();
                let failed = code == ErrorCode::T00_INTERNAL_ERROR
                    || code == ErrorCode::T01_PEER_UNREACHABLE
                    || code == ErrorCode::R00_TRANSFER_TIMED_OUT;
                self.backends.resolved(entry.to, Some(failed), now);
                let code = code_index(code);
                let out = &mut self.stats[entry.to.index()];
                out.rejects[OUTGOING][code] += 1;
                out.round_trip(u64::try_from(now - entry.sent_at).unwrap_or(0));
                self.stats[entry.from.index()].rejects[INCOMING][code] += 1;
                self.void(entry);
                self.counters.relayed_rejects += 1;
                Reply::Relay {
                    to: entry.from,
                    tag: entry.tag,
                    len: reject.as_bytes().len(),
                }
            }
            Ok(Packet::Prepare(_)) | Err(_) => {
                self.pending.remove(slot);
                self.backends.resolved(entry.to, Some(true), now);
                self.counters.invalid_replies += 1;
                self.resolve_failed(entry, RejectReason::Internal)
            }
        }
    }

    /// The next hop could not take or answer the Prepare in `slot` (its link went down, or it
    /// answered with a BTP Error): answer upstream with `reason` and void the hold.
    pub fn handle_failure(&mut self, slot: SlotId, reason: RejectReason) -> Reply {
        if self.pending.get(slot).is_some_and(|e| e.waiting) {
            self.counters.late_replies += 1;
            return Reply::Drop;
        }
        match self.pending.remove(slot) {
            Some(entry) => {
                self.pending_by_peer[entry.from.index()] -= 1;
                self.backends.resolved(entry.to, Some(true), self.clock);
                self.resolve_failed(entry, reason)
            }
            None => {
                self.counters.late_replies += 1;
                Reply::Drop
            }
        }
    }

    fn resolve_failed(&mut self, entry: InFlight, reason: RejectReason) -> Reply {
        self.void(entry);
        self.counters.local_rejects[Counters::reject_index(reason)] += 1;
        self.stats[entry.from.index()].rejects[INCOMING][code_index(reason.code())] += 1;
        Reply::Reject {
            to: entry.from,
            tag: entry.tag,
            reason,
        }
    }

    fn void(&mut self, entry: InFlight) {
        if entry.amount_in > 0 {
            self.ledger.void_hold(entry.from, entry.amount_in);
        }
    }

    /// The next Prepare that expired; its hold is voided and the caller answers R00.
    pub fn poll_expired(&mut self) -> Option<Expired> {
        let entry = self.pending.pop_expired()?;
        self.pending_by_peer[entry.from.index()] -= 1;
        if entry.waiting {
            // Nothing was held or sent; the ledger's wait ends later and is dropped then.
            self.backends.resolved(entry.to, None, self.clock);
            self.forget_parked();
        } else {
            // No answer by the expiry: a failure of the next hop.
            self.backends.resolved(entry.to, Some(true), self.clock);
            self.void(entry);
        }
        self.counters.expired += 1;
        let reason = RejectReason::TimedOut;
        self.counters.local_rejects[Counters::reject_index(reason)] += 1;
        self.stats[entry.from.index()].rejects[INCOMING][code_index(reason.code())] += 1;
        Some(Expired {
            to: entry.from,
            tag: entry.tag,
            reason,
            entry,
        })
    }

    /// Drops the parked copies of waiting Prepares that expired.
    fn forget_parked(&mut self) {
        let pending = &self.pending;
        let spare = &mut self.spare;
        self.parked.retain(|&slot, buffer| {
            let keep = pending
                .get(SlotId::from_u64(slot))
                .is_some_and(|e| e.waiting);
            if !keep && spare.len() < WAITERS_MAX {
                spare.push(std::mem::take(buffer));
            }
            keep
        });
    }
}
