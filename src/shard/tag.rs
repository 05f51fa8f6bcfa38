//! The two handles a request carries through a core, each with one encoder.
//!
//! - [`InTag`]: a Prepare that came in on one of our links. The engine keeps it (as a
//!   [`Tag`]) and hands it back with the verdict, so the answer finds its link, or finds it
//!   gone: the link's generation is 32 bits, so an index would have to be reused 2^32 times
//!   while one Prepare is in flight before a stale answer could reach the wrong connection.
//! - [`OutTag`]: a Prepare we sent on one of our links (the BTP session or the HTTP pool keeps
//!   it until the answer): the engine's slot on this core, or the origin core and its slot
//!   when another core handed the Prepare over, or the control plane's request id.

use super::links::LinkId;
use crate::engine::{SlotId, Tag};

/// A Prepare that arrived on link `link` as request `request_id` (a BTP request id, or the
/// sequence number of an HTTP request on its connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InTag {
    pub(crate) link: LinkId,
    pub(crate) request_id: u32,
}

impl InTag {
    /// `link index << 64 | link generation << 32 | request id`.
    pub(crate) fn encode(self) -> Tag {
        u128::from(self.link.index) << 64
            | u128::from(self.link.generation) << 32
            | u128::from(self.request_id)
    }

    pub(crate) fn decode(tag: Tag) -> InTag {
        InTag {
            link: LinkId {
                index: (tag >> 64) as u16,
                generation: (tag >> 32) as u32,
            },
            request_id: tag as u32,
        }
    }
}

/// Whose slot an outgoing Prepare's answer resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutTag {
    /// This core's engine.
    Local(SlotId),
    /// Another core's: the answer travels back to `origin`.
    Remote {
        /// The core whose engine holds the slot (below 128).
        origin: usize,
        /// The slot there.
        slot: SlotId,
    },
    /// The control plane's own request (CCP) with this id: its answer goes to the speaker.
    Control(u32),
}

/// The top bit marks a remote tag; a local one is the slot's own packing (top bit clear).
const REMOTE: u64 = 1 << 63;
/// A remote tag's origin that no core has (cores are at most 64) marks a control tag.
const CONTROL_ORIGIN: u64 = 0x7f;

impl OutTag {
    /// Local: [`SlotId::to_u64`]. Remote: `1 << 63 | origin << 56 | slot index << 32 |
    /// slot generation` (the slot index takes 24 bits, the generation 31).
    pub(crate) fn encode(self) -> u64 {
        match self {
            OutTag::Local(slot) => slot.to_u64(),
            OutTag::Control(id) => REMOTE | CONTROL_ORIGIN << 56 | u64::from(id),
            OutTag::Remote { origin, slot } => {
                debug_assert!(origin < 127, "origin core {origin}");
                REMOTE
                    | (origin as u64 & 0x7f) << 56
                    | u64::from(slot.index()) << 32
                    | u64::from(slot.generation())
            }
        }
    }

    pub(crate) fn decode(tag: u64) -> OutTag {
        if tag & REMOTE == 0 {
            return OutTag::Local(SlotId::from_u64(tag));
        }
        if tag >> 56 & 0x7f == CONTROL_ORIGIN {
            return OutTag::Control(tag as u32);
        }
        OutTag::Remote {
            origin: (tag >> 56 & 0x7f) as usize,
            slot: SlotId::from_parts((tag >> 32) as u32 & 0x00ff_ffff, tag as u32),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let link = LinkId {
            index: u16::MAX,
            generation: u32::MAX,
        };
        let tag = InTag {
            link,
            request_id: u32::MAX,
        };
        assert_eq!(InTag::decode(tag.encode()), tag);
        let slot = SlotId::from_parts((1 << 24) - 1, 0x7fff_ffff);
        let remote = OutTag::Remote { origin: 126, slot };
        assert_ne!(remote.encode() & REMOTE, 0);
        assert_eq!(OutTag::decode(remote.encode()), remote);
        assert_eq!(slot.to_u64() & REMOTE, 0);
        assert_eq!(
            OutTag::decode(OutTag::Local(slot).encode()),
            OutTag::Local(slot)
        );
        for id in [0, 1, u32::MAX] {
            assert_eq!(
                OutTag::decode(OutTag::Control(id).encode()),
                OutTag::Control(id)
            );
        }
    }
}
