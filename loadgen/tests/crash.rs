//! Durable balances under `kill -9`: the router runs under load from `ilp-loadgen`, is killed at
//! random instants and restarted at once on the same state directory and port (alternating
//! between one and two cores, so recovery also folds files when the core count changes). At
//! the end, for every peer, the router's committed balance holds every Fulfill the sender
//! received (nothing lost) and no Fulfill the sink did not send (nothing invented); the gap is
//! only what was in flight at the kills.
//!
//! Bounded: `KILLS` kills, each after 100–500 ms of load, and a deadline for every wait.
//! `CRASH_SEED=<n>` replays a run's kill instants.

use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KILLS: usize = 24;
const AMOUNT: u64 = 3;
const WINDOW: u64 = 64;
const CONNECTIONS: u64 = 2;
const SINK_DELAY_MS: u64 = 20;

fn loadgen() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ilp-loadgen"))
}

/// The router binary sits beside ours in the same target directory (`cargo test
/// --workspace` builds both).
fn router_binary() -> PathBuf {
    let path = loadgen().with_file_name("ilp-router");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (or `cargo test --workspace`) first",
        path.display()
    );
    path
}

fn io_uring_available() -> bool {
    io_uring::IoUring::new(8).is_ok()
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

struct Setup {
    dir: PathBuf,
    port: u16,
    starts: usize,
}

impl Setup {
    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Starts the router and waits until it accepts connections; the listener must bind at
    /// once, even right after a `kill -9` of the previous router on the same port.
    fn start_router(&mut self, cores: usize) -> Child {
        self.starts += 1;
        let log = self.dir.join(format!("router-{}.log", self.starts));
        let mut child = Command::new(router_binary())
            .args(["run", "--config"])
            .arg(self.dir.join("router.toml"))
            .args(["--cores", &cores.to_string(), "--log-level", "warn"])
            .arg("--state-dir")
            .arg(self.state())
            .args(["--msync-interval-ms", "200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "router start {} exited ({status}): {}",
                    self.starts,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "the router did not listen");
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    fn start_loadgen(&self, duration: &str, cpu: usize) -> Child {
        Command::new(loadgen())
            .args(["--router", &format!("ws://127.0.0.1:{}", self.port)])
            .args(["--sender", "alice:alice-secret", "--sink", "bob:bob-secret"])
            .args(["--destination", "g.router.bob", "--duration", duration])
            .args(["--connections", &CONNECTIONS.to_string()])
            .args(["--window", &WINDOW.to_string()])
            .args(["--amount", &AMOUNT.to_string()])
            // Held answers keep many Prepares held at the router at every kill, so a router
            // that counted a hold as committed would show above what the sink fulfilled.
            .args(["--sink-delay-ms", &SINK_DELAY_MS.to_string()])
            .args(["--cpu-list", &cpu.to_string()])
            .arg("--sender-log")
            .arg(self.dir.join("sender.log"))
            .arg("--sink-log")
            .arg(self.dir.join("sink.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

fn wait_bounded(child: &mut Child, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The sum and count of the amounts in a Fulfill log.
fn log_sum(path: &Path) -> (u128, u64) {
    let bytes = std::fs::read(path).unwrap_or_default();
    assert_eq!(bytes.len() % 8, 0, "{} holds whole records", path.display());
    let sum = bytes
        .chunks_exact(8)
        .map(|r| u128::from(u64::from_le_bytes(r.try_into().unwrap())))
        .sum();
    (sum, bytes.len() as u64 / 8)
}

fn balances(state: &Path) -> Vec<(String, i128)> {
    let output = Command::new(router_binary())
        .args(["balances", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "balances: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    json["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap().to_owned();
            let posted: i128 = p["posted"].as_str().unwrap().parse().unwrap();
            (name, posted)
        })
        .collect()
}

fn posted(balances: &[(String, i128)], name: &str) -> i128 {
    balances
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} is not in {balances:?}"))
        .1
}

#[test]
fn kill_9_loses_nothing_and_invents_nothing() {
    if !io_uring_available() {
        eprintln!("SKIPPED kill_9_loses_nothing_and_invents_nothing: io_uring is not available");
        return;
    }
    let began = Instant::now();
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed {seed} (CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed | 1);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("ilp-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tuning/router.toml"
    ))
    .unwrap()
    .replace("127.0.0.1:7768", &format!("127.0.0.1:{port}"));
    std::fs::write(dir.join("router.toml"), config).unwrap();
    let mut setup = Setup {
        dir: dir.clone(),
        port,
        starts: 0,
    };
    let max_cores = cpus().min(2);
    let loadgen_cpu = cpus() - 1;

    let mut router = setup.start_router(1);
    let mut kills = 0;
    for round in 0..KILLS {
        let mut load = setup.start_loadgen("2s", loadgen_cpu);
        std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
        router.kill().unwrap(); // SIGKILL
        router.wait().unwrap();
        kills += 1;
        // At once, on the same state and port; one core and two in turn.
        let cores = 1 + (round + 1) % max_cores;
        router = setup.start_router(cores);
        wait_bounded(&mut load, "a loadgen segment", Duration::from_secs(15));
    }
    // A last segment without a kill, then a graceful stop.
    let mut load = setup.start_loadgen("300ms", loadgen_cpu);
    wait_bounded(
        &mut load,
        "the last loadgen segment",
        Duration::from_secs(15),
    );
    Command::new("kill")
        .args(["-TERM", &router.id().to_string()])
        .status()
        .unwrap();
    wait_bounded(
        &mut router,
        "the router's graceful stop",
        Duration::from_secs(15),
    );

    let (received, received_count) = log_sum(&dir.join("sender.log"));
    let (sent, sent_count) = log_sum(&dir.join("sink.log"));
    let state = balances(&setup.state());
    let alice = posted(&state, "alice");
    let bob = posted(&state, "bob");
    let in_flight_max = (kills as u128) * u128::from(WINDOW * CONNECTIONS * AMOUNT);
    eprintln!(
        "{kills} kills in {:.1} s: sender received {received_count} Fulfills ({received}), sink \
         sent {sent_count} ({sent}); committed alice {alice}, bob {bob}",
        began.elapsed().as_secs_f64()
    );
    assert!(received_count > 1000, "too little traffic to mean anything");
    assert!(
        alice >= received as i128,
        "lost: alice's balance {alice} is below the {received} the sender was fulfilled"
    );
    assert!(
        alice <= sent as i128,
        "invented: alice's balance {alice} is over the {sent} the sink fulfilled"
    );
    // Bob is paid what alice pays (same asset, no spread), in our sign: we owe him. The two
    // sides need not be equal: a forward whose halves are posted on two cores can be cut
    // between them (bob posted, alice's hold released), which costs the router but never
    // misstates what either peer did.
    assert!(
        -bob >= received as i128,
        "lost: bob's balance {bob} misses Fulfills the sender received ({received})"
    );
    assert!(
        -bob <= sent as i128,
        "invented: bob's balance {bob} is over the {sent} the sink fulfilled"
    );
    assert!(
        sent - received <= in_flight_max,
        "the gap {} is more than could be in flight at {kills} kills",
        sent - received
    );
    assert!(kills >= 20);
    let _ = std::fs::remove_dir_all(&dir);
}
