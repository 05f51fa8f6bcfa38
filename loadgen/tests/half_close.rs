//! A connector that sends its last frame and closes in one TCP segment: the load generator
//! reading through its ring (`--io ring`) must see the end of stream behind the frame (the
//! FIN raises no readiness of its own once the frame's did) and end the run early, not run
//! on against a connection that is gone.
//!
//! The connector here is a stand-in on a blocking loopback socket: it upgrades the
//! WebSocket, answers the sender's BTP auth, waits until the ring reads the connection, then
//! corks the socket, writes a WebSocket Ping and shuts its writing (one segment: Ping and
//! FIN). Bounded: the run is 30 s long and the test fails if it is still going after 10.

mod common;

use common::io_uring_missing;

use ilp_router::link::websocket::{self as ws, Opcode, Role};
use ilp_router::wire::{Btp, BtpBody, BtpRepr};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Reads until `done` says how many bytes of `buf[..filled]` it wants, or fails the test.
fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut done: impl FnMut(&mut [u8]) -> Option<usize>,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(n) = done(buf) {
            return n;
        }
        let mut chunk = [0u8; 4096];
        let n = match s.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other.expect("the load generator writes"),
        };
        assert!(n > 0, "the load generator closed the connection");
        assert!(Instant::now() < deadline, "nothing whole within 10 s");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The next WebSocket frame's unmasked payload, taken from the front of `buf`.
fn next_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    let decoder = ws::FrameDecoder::new(Role::Server, 1 << 20);
    let mut payload = Vec::new();
    let len = read_until(s, buf, |b| {
        let frame = decoder.decode(b).expect("a valid frame")?;
        payload = b[frame.payload.clone()].to_vec();
        Some(frame.len)
    });
    buf.drain(..len);
    payload
}

#[test]
fn the_ring_sees_a_close_that_comes_with_the_last_frame() {
    if io_uring_missing("the_ring_sees_a_close_that_comes_with_the_last_frame") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let json = std::env::temp_dir().join(format!(
        "ilp-loadgen-half-close-{}.json",
        std::process::id()
    ));
    let cpu = ilp_router::shard::allowed_cpus()
        .last()
        .copied()
        .expect("an allowed CPU");
    let child = Command::new(common::loadgen())
        .args(["--role", "send", "--io", "ring", "--connections", "1"])
        .args(["--rate", "20", "--duration", "30s", "--expiry-ms", "60000"])
        .args(["--router", &format!("ws://127.0.0.1:{port}")])
        .args(["--cpu-list", &cpu.to_string()])
        .args(["--json", json.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut killed = common::Killed(child);
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The WebSocket upgrade.
    let mut buf = Vec::new();
    let mut response = vec![0u8; 256];
    let head = read_until(&mut s, &mut buf, |b| {
        let request = ws::parse_upgrade_request(b).expect("a valid upgrade")?;
        let n = ws::write_upgrade_response(request.key(), &mut response);
        response.truncate(n);
        Some(request.len())
    });
    buf.drain(..head);
    s.write_all(&response).unwrap();
    // The sender's auth, answered with an empty Response.
    let auth = next_frame(&mut s, &mut buf);
    let id = Btp::new_checked(&auth[..]).expect("BTP").request_id();
    let repr = BtpRepr {
        request_id: id,
        body: BtpBody::Response,
        protocol_data: &[],
    };
    let mut btp = vec![0u8; repr.buffer_len()];
    repr.emit(&mut btp);
    let mut frame = vec![0u8; ws::FRAME_HEADER_LEN_MAX + btp.len()];
    let n = ws::write_frame(Opcode::Binary, true, &btp, None, &mut frame);
    s.write_all(&frame[..n]).unwrap();
    // Its first Prepare: the send clock runs, and the connection is read through the ring.
    next_frame(&mut s, &mut buf);
    // A Ping and the FIN, corked into one segment.
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "TCP_CORK: {}", std::io::Error::last_os_error());
    let mut ping = [0u8; 16];
    let n = ws::write_ping(b"bye", None, &mut ping);
    s.write_all(&ping[..n]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let closed = Instant::now();
    let status = loop {
        if let Some(status) = killed.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            closed.elapsed() < Duration::from_secs(10),
            "ilp-loadgen still runs 10 s after the connector closed its connection"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    killed
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(
        report["ended_early"],
        Value::Bool(true),
        "the report says the run ended early (status {status:?}, stderr {stderr})"
    );
    drop(s);
}
