//! Telling systemd where the router is in its life: the `sd_notify(3)` protocol, without a crate.
//!
//! Under a unit with `Type=notify` (see `tuning/ilp-router.service`) systemd passes the path of a
//! datagram socket in `$NOTIFY_SOCKET`; the service sends it newline-separated `KEY=VALUE`
//! assignments. systemd considers the service started only on `READY=1`, so units ordered after
//! the router, and `systemctl start` itself, wait until every core listens.
//!
//! | call | datagram | when the router sends it |
//! | --- | --- | --- |
//! | [`ready`] | `READY=1` | every core started (listeners bound); again when a reload has ended |
//! | [`reloading`] | `RELOADING=1` `MONOTONIC_USEC=<µs>` | a reload (SIGHUP) begins |
//! | [`stopping`] | `STOPPING=1` | shutdown begins (SIGTERM/SIGINT), before the drain |
//! | [`status`] | `STATUS=<text>` | free text for `systemctl status`, e.g. what a drain waits for |
//! | [`watchdog`] | `WATCHDOG=1` | at least every half [`watchdog_interval`], if the unit sets `WatchdogSec=` |
//!
//! `MONOTONIC_USEC` is `CLOCK_MONOTONIC` in µs when the reload begins; systemd 253 and later
//! need it with `RELOADING=1` (for `Type=notify-reload`, it ties the message to the reload
//! systemd asked for) and older versions ignore it.
//!
//! # Contract
//!
//! - Without `$NOTIFY_SOCKET` (not under systemd, or a unit that is not `Type=notify`) every
//!   call does nothing and returns `Ok(())`, so callers need no "am I under systemd" check.
//! - `$NOTIFY_SOCKET` is an absolute path, or a name in the abstract namespace written with a
//!   leading `@`. Anything else (systemd 254's `vsock:` addresses, a relative path) is an
//!   [`io::ErrorKind::InvalidInput`] error.
//! - Errors (no such socket, permission, a datagram refused) are returned, never panics; the
//!   caller logs them and carries on, since a missed notification must not stop the router.
//! - Each call opens an unbound `AF_UNIX` datagram socket, sends one datagram and closes it: a
//!   few syscalls, for the control plane only (never from a core's packet path).
//! - The environment is read, never changed (`sd_notify`'s `unset_environment` is not offered:
//!   the router starts no children that could inherit the socket).
//! - [`Notifier`] takes the socket as a parameter instead of the environment: the functions
//!   above are `Notifier::from_env()` plus one call, and tests use a socket of their own.
//!
//! Why no crate: the protocol is one `sendto` of a short string on a [`UnixDatagram`], which the
//! standard library has, abstract addresses included; `libsystemd` bindings would link a C
//! library, and the pure-Rust crates bring more API than these five messages. Not done here:
//! passing file descriptors (`FDSTORE=1`), `EXTEND_TIMEOUT_USEC`, `MAINPID`, and
//! `NOTIFY_SOCKET` over vsock.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

/// The variable systemd sets to the socket's address.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `READY=1` to `$NOTIFY_SOCKET`: start-up, or a reload, has finished.
pub fn ready() -> io::Result<()> {
    Notifier::from_env().ready()
}

/// Sends `RELOADING=1` and `MONOTONIC_USEC=<now>` to `$NOTIFY_SOCKET`: a reload begins. Send
/// [`ready`] when it has ended, whether it applied or not.
pub fn reloading() -> io::Result<()> {
    Notifier::from_env().reloading()
}

/// Sends `STOPPING=1` to `$NOTIFY_SOCKET`: shutdown begins.
pub fn stopping() -> io::Result<()> {
    Notifier::from_env().stopping()
}

/// Sends `STATUS=<text>` to `$NOTIFY_SOCKET`, shown by `systemctl status`. Line breaks in
/// `text` become spaces (a new line would start another assignment).
pub fn status(text: &str) -> io::Result<()> {
    Notifier::from_env().status(text)
}

/// Sends `WATCHDOG=1` to `$NOTIFY_SOCKET`: the service is alive.
pub fn watchdog() -> io::Result<()> {
    Notifier::from_env().watchdog()
}

/// The unit's `WatchdogSec=`, when it set one for this process: `$WATCHDOG_USEC`, if
/// `$WATCHDOG_PID` is unset or is our pid. Send [`watchdog`] at least every half of it.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var_os("WATCHDOG_USEC").as_deref(),
        std::env::var_os("WATCHDOG_PID").as_deref(),
        std::process::id(),
    )
}

/// Where notifications go: a socket address as `$NOTIFY_SOCKET` writes it, or nowhere.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<OsString>,
}

impl Notifier {
    /// The socket of `$NOTIFY_SOCKET`; none when it is unset or empty.
    pub fn from_env() -> Self {
        Self::new(std::env::var_os(NOTIFY_SOCKET).unwrap_or_default())
    }

    /// This socket: an absolute path, or `@name` for an abstract address. Empty means none.
    pub fn new(socket: impl Into<OsString>) -> Self {
        let socket = socket.into();
        Self {
            socket: (!socket.is_empty()).then_some(socket),
        }
    }

    /// Whether there is a socket to send to.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// `READY=1`.
    pub fn ready(&self) -> io::Result<()> {
        self.send("READY=1")
    }

    /// `RELOADING=1` and `MONOTONIC_USEC=` the current `CLOCK_MONOTONIC` in µs.
    pub fn reloading(&self) -> io::Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        self.send(&reloading_state(monotonic_us()?))
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }

    /// `STATUS=<text>`, line breaks made spaces.
    pub fn status(&self, text: &str) -> io::Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        self.send(&status_state(text))
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments) as one datagram.
    pub fn send(&self, state: &str) -> io::Result<()> {
        match &self.socket {
            None => Ok(()),
            Some(socket) => send_to(socket, state.as_bytes()),
        }
    }
}

/// One datagram to the socket `$NOTIFY_SOCKET` names.
fn send_to(socket: &OsStr, datagram: &[u8]) -> io::Result<()> {
    let bytes = socket.as_bytes();
    let address = match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..])?,
        Some(b'/') => SocketAddr::from_pathname(Path::new(socket))?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{NOTIFY_SOCKET}={}: not an absolute path or an @abstract name",
                    socket.to_string_lossy()
                ),
            ))
        }
    };
    let sender = UnixDatagram::unbound()?;
    let sent = sender.send_to_addr(datagram, &address)?;
    if sent != datagram.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("{NOTIFY_SOCKET}: sent {sent} of {} bytes", datagram.len()),
        ));
    }
    Ok(())
}

fn reloading_state(monotonic_us: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_us}")
}

fn status_state(text: &str) -> String {
    let mut state = String::with_capacity("STATUS=".len() + text.len());
    state.push_str("STATUS=");
    state.extend(text.chars().map(|c| match c {
        '\n' | '\r' => ' ',
        c => c,
    }));
    state
}

/// `CLOCK_MONOTONIC` in µs: the clock `MONOTONIC_USEC` is read against. (`Instant` reads the
/// same clock but does not expose its value.)
fn monotonic_us() -> io::Result<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to this live local and keeps
    // no reference to it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // The monotonic clock is never negative; a nanosecond field is under 10^9.
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    Ok(seconds
        .saturating_mul(1_000_000)
        .saturating_add(nanos / 1_000))
}

fn watchdog_interval_from(
    usec: Option<&OsStr>,
    pid: Option<&OsStr>,
    own_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.to_str()?.parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    let usec = usec?.to_str()?.parse::<u64>().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A bound datagram socket in a fresh temp dir, as systemd would listen, and its path.
    fn listener(name: &str) -> (UnixDatagram, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("ilp-router-notify-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (socket, path)
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn each_call_sends_its_exact_datagram() {
        let (socket, path) = listener("exact");
        let notifier = Notifier::new(&path);
        assert!(notifier.enabled());
        notifier.ready().unwrap();
        assert_eq!(receive(&socket), "READY=1");
        notifier.stopping().unwrap();
        assert_eq!(receive(&socket), "STOPPING=1");
        notifier.watchdog().unwrap();
        assert_eq!(receive(&socket), "WATCHDOG=1");
        notifier.status("draining: 12 Prepares in flight").unwrap();
        assert_eq!(receive(&socket), "STATUS=draining: 12 Prepares in flight");
        notifier.send("READY=1\nSTATUS=reloaded").unwrap();
        assert_eq!(receive(&socket), "READY=1\nSTATUS=reloaded");
        let _ = fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let (socket, path) = listener("reload");
        let before = monotonic_us().unwrap();
        Notifier::new(&path).reloading().unwrap();
        let after = monotonic_us().unwrap();
        let got = receive(&socket);
        let usec = got
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("unexpected datagram {got:?}"));
        let usec: u64 = usec.parse().unwrap();
        assert!(before <= usec, "{before} > {usec}");
        assert!(usec <= after, "{usec} > {after}");
        assert_eq!(reloading_state(42), "RELOADING=1\nMONOTONIC_USEC=42");
        let _ = fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn monotonic_clock_matches_instant() {
        // Instant is CLOCK_MONOTONIC on Linux: two reads around a sleep move together.
        let (start_us, start) = (monotonic_us().unwrap(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (end_us, elapsed) = (monotonic_us().unwrap(), start.elapsed());
        let ours = Duration::from_micros(end_us - start_us);
        let diff = ours.abs_diff(elapsed);
        assert!(diff < Duration::from_millis(5), "{ours:?} vs {elapsed:?}");
    }

    #[test]
    fn status_cannot_inject_another_assignment() {
        let (socket, path) = listener("status");
        Notifier::new(&path)
            .status("config error\nREADY=1\r\n")
            .unwrap();
        assert_eq!(receive(&socket), "STATUS=config error READY=1  ");
        let _ = fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn abstract_socket_names_start_with_an_at_sign() {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ilp-router-notify-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Notifier::new(format!("@{name}")).ready().unwrap();
        assert_eq!(receive(&socket), "READY=1");
    }

    #[test]
    fn without_a_socket_every_call_is_a_no_op() {
        let none = Notifier::new("");
        assert!(!none.enabled());
        assert!(!Notifier::default().enabled());
        none.ready().unwrap();
        none.reloading().unwrap();
        none.stopping().unwrap();
        none.status("x").unwrap();
        none.watchdog().unwrap();
    }

    #[test]
    fn bad_addresses_are_errors_not_panics() {
        let relative = Notifier::new("run/notify").ready().unwrap_err();
        assert_eq!(relative.kind(), io::ErrorKind::InvalidInput);
        let vsock = Notifier::new("vsock:2:1234").ready().unwrap_err();
        assert_eq!(vsock.kind(), io::ErrorKind::InvalidInput);
        // A path where nobody listens: the send fails (ENOENT), it does not panic.
        let dir =
            std::env::temp_dir().join(format!("ilp-router-notify-gone-{}", std::process::id()));
        assert!(Notifier::new(dir.join("notify")).ready().is_err());
        // Longer than sun_path (108 bytes) cannot be an address.
        let long = format!("/{}", "x".repeat(200));
        assert!(Notifier::new(long).ready().is_err());
    }

    #[test]
    fn watchdog_interval_needs_our_pid_or_none() {
        let os = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(
            watchdog_interval_from(os("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_interval_from(os("500000"), os("7"), 7),
            Some(Duration::from_millis(500))
        );
        assert_eq!(watchdog_interval_from(os("500000"), os("8"), 7), None);
        assert_eq!(watchdog_interval_from(os("500000"), os("x"), 7), None);
        assert_eq!(watchdog_interval_from(None, os("7"), 7), None);
        assert_eq!(watchdog_interval_from(os("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(os("-1"), None, 7), None);
    }
}
