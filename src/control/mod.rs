//! The control plane, sans I/O: what routers say to each other about routes.
//!
//! - [`ccp`]: the payloads of `peer.route.control` and `peer.route.update` (CCP), decoded into
//!   owned structs and encoded back, byte for byte as the reference libraries write them, and
//!   the peer-protocol constants they travel with.
//!
//! Nothing here runs on the packet path; decoding allocates.

pub mod ccp;
