//! Transports: WebSocket framing, the BTP session, ILP over HTTP, and what they share.
//!
//! - [`buf`]: the read buffer with compaction, the head reader, the frame writer (masking).
//! - [`http1`]: HTTP/1.1 heads on httparse, for the WebSocket handshake and ILP over HTTP.
//! - [`tls`]: the rustls configs of our TLS listeners and dialers, and which peer a client
//!   certificate stands for.
//! - [`url`]: the URLs of peers we dial (`ws://`, `wss://`, `http://`, `https://`).

pub mod auth;
pub mod btp;
pub mod buf;
pub mod http;
pub mod http1;
pub mod tls;
pub mod url;
pub mod websocket;
