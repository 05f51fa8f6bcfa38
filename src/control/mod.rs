//! The control plane, sans I/O: what routers say to each other about routes.
//!
//! - [`ccp`]: the payloads of `peer.route.control` and `peer.route.update` (CCP), decoded into
//!   owned structs and encoded back, byte for byte as the reference libraries write them, and
//!   the peer-protocol constants they travel with.
//! - [`speaker`]: the route speaker: our routing table id and epochs, who is synced, what we
//!   learned from whom (import filters, limits, hold-down), the best route per prefix, and
//!   what each peer may be told (export rules).
//!
//! The runtime (`shard/control.rs`) runs the speaker on a thread of its own and publishes the
//! route table it learns; ILDCP is answered by the engine itself. Nothing here runs on the
//! packet path; decoding allocates.

pub mod ccp;
pub mod speaker;
