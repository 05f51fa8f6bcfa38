//! What the load generator's end-to-end tests share: the two binaries, free loopback ports,
//! waiting for a listener, and child processes that die with the test.

#![allow(dead_code)] // each test file uses a part

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// The `ilp-loadgen` binary built for these tests.
pub(crate) fn loadgen() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ilp-loadgen"))
}

/// The router binary sits beside ours in the same target directory (`cargo test
/// --workspace` builds both).
pub(crate) fn router_binary() -> PathBuf {
    let path = loadgen().with_file_name("ilp-router");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (or `cargo test --workspace`) first",
        path.display()
    );
    path
}

/// True (and says so) where io_uring is unavailable: the test that asks is skipped.
pub(crate) fn io_uring_missing(test: &str) -> bool {
    let missing = io_uring::IoUring::new(8).is_err();
    if missing {
        eprintln!("SKIPPED {test}: io_uring is not available on this kernel or is disabled");
    }
    missing
}

/// A loopback port free now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether something listens on the loopback port: a connection that is not to itself (a
/// connect to a free port in the ephemeral range can pick that very port as its source and
/// "succeed", TCP's simultaneous open).
pub(crate) fn listening_on(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port))
        .is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
}

/// Waits (at most 20 s) until something listens on `port`.
pub(crate) fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !listening_on(port) {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed when dropped.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
