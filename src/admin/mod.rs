//! The admin side: an HTTP/1.1 listener for operators and Prometheus, off the packet cores.
//!
//! - [`prometheus`]: a writer of the Prometheus text format 0.0.4 ([`Exposition`]): families,
//!   counters, gauges, histograms, escaping, number formatting.
//! - [`process`]: the standard `process_*` metrics, read from `/proc`.
//! - [`http`]: what a handler sees and answers ([`Request`], [`Response`]), sans-IO.
//! - [`server`]: the listener ([`spawn`], [`AdminServer`]): blocking `std::net` on threads of
//!   its own, bearer-token auth, size limits and deadlines, a connection cap.
//!
//! - `api`: the router's endpoints (metrics, health, peers, routes, config, drains): the one
//!   [`Handler`] the router serves, reading what the cores publish (`shard/report.rs`).
//!
//! Everything but `api` is generic: it knows nothing of peers, balances or routes. The
//! handler runs on a connection thread, so it only reads what the cores publish (counters,
//! reports on request, with a deadline) and never blocks on a core.
//!
//! # Non-goals
//!
//! TLS, keep-alive, HTTP/2, OpenMetrics, summaries, a routing table of paths (a `match` in
//! the handler is enough for a dozen endpoints).

pub(crate) mod api;
pub mod client;
pub mod http;
pub mod process;
pub mod prometheus;
pub mod server;

#[cfg(test)]
mod tests;

pub use client::percent_encode;
pub use http::{percent_decode, BadTarget, Request, Response};
pub use process::{write_process_metrics, ProcessStats};
pub use prometheus::{Counts, Exposition, Kind, Labels, Value, CONTENT_TYPE};
pub use server::{
    spawn, AdminCounters, AdminServer, AdminServerConfig, Handler, BODY_LEN_MAX, HEAD_LEN_MAX,
};
