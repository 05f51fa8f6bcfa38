//! A real etcd cluster on loopback for tests: `members` etcd processes with their data in a
//! fresh temp directory, killed (SIGKILL) and removed when dropped. Every wait is bounded.
//!
//! Standalone (std only, no other module of tests/common), so that tests of both workspace
//! crates can include it: `#[path = "common/etcd.rs"] mod etcd;` from tests/*.rs and
//! `#[path = "../../tests/common/etcd.rs"] mod etcd;` from loadgen/tests/*.rs.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a cluster, or one restarted member, may take to report healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);
/// Tries at starting a cluster when a member dies at once (a port taken meanwhile).
const START_TRIES: usize = 3;

/// Clusters started by this test process, to keep their ports and directories apart.
static STARTED: AtomicU32 = AtomicU32::new(0);

/// One etcd process of the cluster.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Holds `data/` (etcd's data dir) and `etcd.log` (its stdout and stderr).
    dir: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// The last lines of its log, for a panic message.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(25)..].join("\n");
        format!(
            "--- {} (client port {}) log tail:\n{tail}",
            self.name, self.client_port
        )
    }

    /// Whether its process has exited (reaping it).
    fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running etcd cluster on 127.0.0.1.
#[derive(Debug)]
pub(crate) struct EtcdCluster {
    dir: PathBuf,
    token: String,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts `members` etcd processes on 127.0.0.1 (a free client and peer port each), with
    /// their data in a fresh directory under the system's temp dir, and waits (at most 30 s)
    /// until every member reports healthy, else panics with each member's log tail.
    /// `None` (after printing why `what` is skipped) when etcd is not installed; under CI
    /// (the env var `CI` set) a missing etcd panics instead.
    #[allow(dead_code)]
    pub(crate) fn start(members: usize, what: &str) -> Option<EtcdCluster> {
        assert!(members > 0, "an etcd cluster needs a member");
        if !etcd_installed() {
            if std::env::var_os("CI").is_some() {
                panic!("etcd is missing under CI: .ci/run installs etcd-server");
            }
            eprintln!("SKIPPED {what}: etcd is not installed (apt-get install etcd-server)");
            return None;
        }
        let mut failures = String::new();
        for _ in 0..START_TRIES {
            let number = STARTED.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let unique = format!("{}-{number}-{nanos}", std::process::id());
            let dir = std::env::temp_dir().join(format!("ilp-etcd-{unique}"));
            let base = free_ports(2 * members as u16, number);
            let mut cluster = EtcdCluster {
                dir: dir.clone(),
                token: format!("ilp-test-{unique}"),
                members: (0..members)
                    .map(|index| {
                        let name = format!("m{index}");
                        let member_dir = dir.join(&name);
                        std::fs::create_dir_all(&member_dir).unwrap();
                        Member {
                            name,
                            client_port: base + 2 * index as u16,
                            peer_port: base + 2 * index as u16 + 1,
                            dir: member_dir,
                            child: None,
                        }
                    })
                    .collect(),
            };
            for index in 0..members {
                cluster.spawn(index, "new");
            }
            match cluster.wait_healthy(0..members) {
                Ok(()) => return Some(cluster),
                // A member that died at once most likely lost its port to someone else
                // between our check and its bind: start over on other ports.
                Err(report) if cluster.members.iter_mut().any(Member::exited) => {
                    failures.push_str(&report);
                    failures.push('\n');
                }
                Err(report) => panic!("etcd cluster for {what} is not healthy:\n{report}"),
            }
        }
        panic!("etcd cluster for {what} did not start in {START_TRIES} tries:\n{failures}");
    }

    /// `http://127.0.0.1:PORT`, the client URL of each member, in member order.
    #[allow(dead_code)]
    pub(crate) fn client_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Kills member `index` (SIGKILL) and waits for it to be gone.
    #[allow(dead_code)]
    pub(crate) fn stop_member(&mut self, index: usize) {
        self.members[index].kill();
    }

    /// Restarts member `index` on its data dir and waits (at most 30 s) until it is healthy
    /// (which takes a quorum of members running), else panics with the log tails.
    #[allow(dead_code)]
    pub(crate) fn start_member(&mut self, index: usize) {
        assert!(
            self.members[index].child.is_none(),
            "etcd member {index} is running"
        );
        self.spawn(index, "existing");
        if let Err(report) = self.wait_healthy(index..index + 1) {
            panic!("restarted etcd member {index} is not healthy:\n{report}");
        }
    }

    /// Whether member `index` runs and its `/health` says `"health":"true"` (it has a leader
    /// and can serve).
    #[allow(dead_code)]
    pub(crate) fn healthy(&self, index: usize) -> bool {
        let member = &self.members[index];
        member.child.is_some() && health(member.client_port)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, index: usize, state: &str) {
        let initial_cluster = self.initial_cluster();
        let member = &mut self.members[index];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(member.log_path())
            .unwrap();
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let child = Command::new("etcd")
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(member.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run etcd: {e}"));
        member.child = Some(child);
    }

    /// Waits until every member in `indices` is healthy; `Err` with every member's log tail
    /// after [`HEALTHY_WITHIN`] or as soon as one of them has exited.
    fn wait_healthy(&mut self, indices: std::ops::Range<usize>) -> Result<(), String> {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        let outcome = loop {
            if let Some(index) = indices.clone().find(|&i| self.members[i].exited()) {
                break format!("etcd member {index} exited");
            }
            let pending: Vec<usize> = indices.clone().filter(|&i| !self.healthy(i)).collect();
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                break format!("etcd members {pending:?} not healthy after {HEALTHY_WITHIN:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let tails: Vec<String> = self.members.iter().map(Member::log_tail).collect();
        Err(format!("{outcome}\n{}", tails.join("\n")))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether an `etcd` binary runs here.
fn etcd_installed() -> bool {
    Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `GET /health` on a loopback port says `"health":"true"` (bounded by a second).
fn health(port: u16) -> bool {
    let timeout = Duration::from_secs(1);
    let address = ([127, 0, 0, 1], port).into();
    let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else {
        return false;
    };
    if stream.local_addr().ok() == stream.peer_addr().ok() {
        return false;
    }
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer.starts_with("HTTP/1.1 200") && answer.contains(r#""health":"true""#)
}

/// `count` consecutive loopback ports free now. Taken from 13000–19999, below Linux's
/// ephemeral range (32768 and up, where outgoing connections take their source ports, and
/// a connect to a dead member's port could connect to itself) and apart from the 20000s the
/// loadgen tests use; `salt` (a per-process cluster number) keeps clusters started by one
/// test process apart.
fn free_ports(count: u16, salt: u32) -> u16 {
    let seed = std::process::id()
        ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
    for attempt in 0..200u32 {
        let offset = seed
            .wrapping_add(salt.wrapping_mul(104_729))
            .wrapping_add(attempt.wrapping_mul(7919))
            % (7000 - u32::from(count));
        let base = 13_000 + offset as u16;
        let held: Vec<TcpListener> = (base..base + count)
            .filter_map(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == usize::from(count) {
            return base;
        }
    }
    panic!("no {count} consecutive free ports in 13000-19999");
}
