//! ILDCP client (RFC 31): a router started without `ilp_address` asks its parent for one.
//!
//! Before any core starts (so nothing is forwarded until the address is known), `run` dials
//! the parent's `btp_url` with a blocking socket, authenticates over BTP, sends one
//! `peer.config` Prepare (amount 0, the peer-protocol condition, 60 s expiry) and reads the
//! Fulfill: its fulfillment must be 32 zero bytes and its data a valid ILP address, the asset
//! scale and code (bytes after the code are ignored, as both reference libraries do). The
//! router then runs as `<that address>`. Errors name what went wrong; the caller retries.

use crate::engine::{PeerId, PEER_PROTOCOL_CONDITION};
use crate::link::btp::{BtpSession, Event, CONTROL_LEN_MAX};
use crate::link::url::BtpUrl;
use crate::link::websocket::{self as ws, Opcode};
use crate::wire::{check_address, Address, Packet, PrepareRepr, BTP_HEADER_LEN_MAX};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the parent said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// Our address.
    pub address: String,
    /// The asset scale of the link.
    pub asset_scale: u8,
    /// The asset code of the link.
    pub asset_code: String,
}

/// How long one attempt may take.
const ATTEMPT_DEADLINE: Duration = Duration::from_secs(10);

/// Asks the parent at `url` (authenticating as `username`/`token`) for our address.
pub fn ask(url: &BtpUrl, username: &str, token: &str) -> Result<Learned, String> {
    let target = url
        .host_port()
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", url.host_port()))?
        .next()
        .ok_or_else(|| format!("{}: resolves to nothing", url.host_port()))?;
    let mut stream = TcpStream::connect_timeout(&target, ATTEMPT_DEADLINE)
        .map_err(|e| format!("connect to {target}: {e}"))?;
    stream
        .set_read_timeout(Some(ATTEMPT_DEADLINE))
        .and_then(|()| stream.set_write_timeout(Some(ATTEMPT_DEADLINE)))
        .map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| format!("{target}: {e}");
    // The WebSocket upgrade.
    let nonce = nonce();
    let mut out = vec![0u8; ws::upgrade_request_len(&url.host_port(), &url.path)];
    let n = ws::write_upgrade_request(&url.host_port(), &url.path, &nonce, &mut out);
    stream.write_all(&out[..n]).map_err(io)?;
    let mut buf = Vec::with_capacity(4096);
    let head_len = loop {
        read_more(&mut stream, &mut buf).map_err(io)?;
        match ws::parse_upgrade_response(&buf, &nonce) {
            Ok(Some(len)) => break len,
            Ok(None) => continue,
            Err(e) => return Err(format!("WebSocket upgrade refused: {e}")),
        }
    };
    buf.drain(..head_len);
    // BTP auth, then the request.
    let now = unix_ms();
    let mut session = BtpSession::client(now, PeerId(0), 10_000, 4, 4);
    let mut auth = vec![0u8; BtpSession::auth_len(username.as_bytes(), token.as_bytes())];
    let n = session.write_auth(username.as_bytes(), token.as_bytes(), &mut auth);
    send(&mut stream, &auth[..n]).map_err(io)?;
    let mut control = [0u8; CONTROL_LEN_MAX];
    loop {
        let message = next_message(&mut stream, &mut buf)?;
        match session.handle_message(now, &message, &mut control) {
            Event::Opened(_) => break,
            Event::Close => return Err("the parent refused our BTP auth".into()),
            _ => continue,
        }
    }
    let expires_at = unix_ms() + 60_000;
    let repr = PrepareRepr {
        amount: 0,
        expires_at,
        execution_condition: &PEER_PROTOCOL_CONDITION,
        destination: Address::new_checked(b"peer.config").expect("a valid address"),
        data: b"",
    };
    let mut prepare = vec![0u8; repr.buffer_len()];
    repr.emit(&mut prepare);
    let mut header = [0u8; BTP_HEADER_LEN_MAX];
    let n = session
        .write_prepare_header(1, prepare.len(), expires_at, &mut header)
        .map_err(|e| format!("BTP: {e:?}"))?;
    send(&mut stream, &[&header[..n], &prepare].concat()).map_err(io)?;
    loop {
        let message = next_message(&mut stream, &mut buf)?;
        match session.handle_message(unix_ms(), &message, &mut control) {
            Event::Reply { ilp, .. } => return parse_reply(&message[ilp]),
            Event::Close => return Err("the parent closed the link".into()),
            _ => continue,
        }
    }
}

/// Checks the parent's answer and reads the address out of it.
pub fn parse_reply(ilp: &[u8]) -> Result<Learned, String> {
    match Packet::new_checked(ilp).map_err(|e| format!("the answer does not decode: {e:?}"))? {
        Packet::Fulfill(fulfill) => {
            if fulfill.fulfillment() != &[0u8; 32] {
                return Err("the Fulfill's fulfillment is not 32 zero bytes".into());
            }
            let mut reader = crate::wire::oer::Reader::new(fulfill.data(), 0);
            let bad = |what: &str| format!("the ILDCP answer's {what} does not decode");
            let address = reader.var_octets().map_err(|_| bad("address"))?;
            let asset_scale = reader.u8().map_err(|_| bad("asset scale"))?;
            let code = reader.var_octets().map_err(|_| bad("asset code"))?;
            let data = fulfill.data();
            let address = &data[address];
            check_address(address).map_err(|_| {
                format!(
                    "{:?} is not a valid ILP address",
                    address.escape_ascii().to_string()
                )
            })?;
            Ok(Learned {
                address: String::from_utf8_lossy(address).into_owned(),
                asset_scale,
                asset_code: String::from_utf8_lossy(&data[code]).into_owned(),
            })
        }
        Packet::Reject(reject) => Err(format!(
            "the parent answered {} {:?}",
            reject.code().as_str(),
            String::from_utf8_lossy(reject.message())
        )),
        Packet::Prepare(_) => Err("the parent answered with a Prepare".into()),
    }
}

/// Reads whatever is available into `buf` (one read).
fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the parent closed the connection",
        ));
    }
    if buf.len() + n > 1 << 20 {
        return Err(std::io::Error::other("the parent sent too much"));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// The next binary WebSocket message from the parent (control frames answered or skipped).
fn next_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    let decoder = ws::FrameDecoder::new(ws::Role::Client, 1 << 20);
    loop {
        if let Some(frame) = decoder
            .decode(buf)
            .map_err(|e| format!("bad WebSocket frame: {e:?}"))?
        {
            let payload = buf[frame.payload.clone()].to_vec();
            let len = frame.len;
            let opcode = frame.opcode;
            buf.drain(..len);
            match opcode {
                Opcode::Binary => return Ok(payload),
                Opcode::Close => return Err("the parent closed the WebSocket".into()),
                _ => continue,
            }
        }
        read_more(stream, buf).map_err(|e| e.to_string())?;
    }
}

/// Sends one binary message, masked (we are the client).
fn send(stream: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    let mut frame = vec![0u8; payload.len() + 14];
    let mask = nonce_mask();
    let n = ws::write_frame(Opcode::Binary, true, payload, Some(mask), &mut frame);
    stream.write_all(&frame[..n])
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Fresh bytes for the WebSocket key (RFC 6455 asks for a nonce, not a secret).
fn nonce() -> [u8; ws::NONCE_LEN] {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id());
    let mut out = [0u8; ws::NONCE_LEN];
    let mut x = seed as u64 | 1;
    for byte in &mut out {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
    out
}

fn nonce_mask() -> [u8; 4] {
    let n = nonce();
    [n[0], n[1], n[2], n[3]]
}

#[cfg(test)]
mod test {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_vectors_response_reads_and_bad_ones_are_refused() {
        let reply = unhex("0d3800000000000000000000000000000000000000000000000000000000000000001711672e636f6e6e6563746f722e616c6963650903555344");
        assert_eq!(
            parse_reply(&reply),
            Ok(Learned {
                address: "g.connector.alice".into(),
                asset_scale: 9,
                asset_code: "USD".into()
            })
        );
        let mut wrong = reply.clone();
        wrong[2] = 1;
        assert!(parse_reply(&wrong).unwrap_err().contains("zero bytes"));
        let reject = unhex("0e5446303008672e706172656e74467061636b657420646f6573206e6f7420636f6e7461696e20636f727265637420636f6e646974696f6e20666f72206120706565722070726f746f636f6c20726571756573742e00");
        assert!(parse_reply(&reject).unwrap_err().contains("F00"));
    }
}
