//! The sans-IO forwarding engine: events in, actions out; no sockets, no executor, no clock.

mod peer;
pub mod rate;
pub mod route;

pub use peer::PeerId;
