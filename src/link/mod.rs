//! Transports: WebSocket framing and the BTP session.

pub mod auth;
pub mod btp;
pub mod http;
pub mod websocket;
