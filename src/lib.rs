//! `ilp-router`: an Interledger (ILPv4) router appliance.
//!
//! - [`wire`]: zero-copy views and emitters for ILPv4 and BTP packets.
//! - [`decode`]: the JSON rendering behind `ilp-router decode`.

pub mod decode;
pub mod wire;
