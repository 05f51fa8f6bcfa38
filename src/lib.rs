//! `ilp-router`: an Interledger (ILPv4) router appliance.
//!
//! - [`wire`]: zero-copy views and emitters for ILPv4 and BTP packets.
//! - [`id`]: [`id::PeerId`] and [`id::CoreId`], shared by every layer.
//! - [`engine`]: the sans-IO forwarding engine (routing, amounts, balances, expiry).
//! - [`link`]: WebSocket framing, BTP sessions and peer authentication (sans-IO).
//! - [`control`]: the control plane: the CCP route-exchange messages (`peer.route.*`).
//! - [`shard`]: the running router: one pinned executor per core, sockets, cross-core mesh.
//! - [`state`]: durable balances: memory-mapped ledger rows per core, recovery, reading.
//! - [`settlements`]: settlements made outside the router, journalled once per key.
//! - [`config`] and [`cli`]: the TOML config and the command line.
//! - [`decode`]: the JSON rendering behind `ilp-router decode`.
//! - [`admin`]: the admin API (metrics, health, peers, routes, drains), off the packet cores.
//! - [`ildcp`]: the ILDCP client: learning our address from a parent at start.
//! - [`notify`]: systemd's readiness protocol (`sd_notify`).

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod decode;
pub mod engine;
pub mod id;
pub mod ildcp;
pub mod limits;
pub mod link;
pub mod notify;
pub mod settlements;
pub mod shard;
pub mod state;
pub mod wire;
