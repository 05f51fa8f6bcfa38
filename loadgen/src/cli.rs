//! The command line: the `clap` types, the parsers of single flags, and `Cli::validate`, which
//! checks the flags against each other and turns them into what the run needs (`CliShared`
//! for the threads, one `ThreadSpec` per CPU, and the run's TLS configs, their PEM files read
//! here once). Every error here names its flag; `run` prints it and exits with status 2.
//! Nothing here opens a socket or starts a thread.

use crate::http;
use crate::plan::SinkOptions;
use crate::sinks::{self, Fault, FaultEvent, SinkSpec, DESTINATIONS_MAX};
use crate::tls::{self, KeyPair, Trust};
use crate::worker::ThreadSpec;
use clap::{Parser, ValueEnum};
use ilp_router::link::url::{self, BtpUrl, Scheme};
use ilp_router::wire::{check_address, ErrorCode};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Load generator for ILP connectors: BTP or HTTP sender and sink peers, packets/s and
/// latency.
#[derive(Debug, Parser)]
#[command(name = "ilp-loadgen", version, about)]
pub(crate) struct Cli {
    /// How the peers speak to the connector: BTP over WebSocket, or ILP over HTTP (RFC 35,
    /// synchronous: one POST per Prepare, the Fulfill or Reject in the 200 response).
    #[arg(long, value_enum, default_value_t = Transport::Btp)]
    transport: Transport,
    /// The connector's URL. BTP: its WebSocket URL, e.g. ws://127.0.0.1:7768 (a path is
    /// allowed), or wss://host:port over TLS. HTTP: where the sender POSTs,
    /// http://host:port/path (path used verbatim, default `/`), or https://… over TLS (port
    /// 443 by default). A TLS URL needs `--ca-file` or `--insecure`; its host is the name
    /// (SNI) the server's certificate must hold (an IP address works too).
    #[arg(long, default_value = "ws://127.0.0.1:7768")]
    router: String,
    /// The sender's credentials, NAME:TOKEN (NAME may be empty). Over HTTP only the token is
    /// sent, as `Authorization: Bearer TOKEN`: everything after the first `:` (so it may
    /// contain `:`). The token may be empty over BTP with `--client-cert` (the certificate
    /// names the peer).
    #[arg(long, default_value = "alice:alice-secret")]
    sender: String,
    /// The sink's credentials, NAME:TOKEN. Over HTTP the sink requires `Bearer TOKEN` from
    /// whoever POSTs to it (the connector dialling it); with `--direct`, the sender's token.
    /// Repeat it for several sinks (one a flag, in order), or number one with `--sinks`. Over
    /// BTP with `--client-cert` the token may be empty (`--sink bob:`): the certificate names
    /// the peer.
    #[arg(long, value_name = "NAME:TOKEN", default_value = "bob:bob-secret")]
    sink: Vec<String>,
    /// Play N sinks (1 to 256) numbered from one `--sink NAME:TOKEN`: sink i is NAME{i}, its token
    /// TOKEN with NAME{i} in place of a leading NAME (the default gives bob1:bob1-secret …
    /// bobN:bobN-secret), else TOKEN{i}; an empty TOKEN stays empty. BTP: every sink dials the
    /// connector with its own credentials, `--connections` connections each. HTTP: sink i listens
    /// on the port of `--sink-listen` plus i − 1. Not with `--direct`. `--sink-log` is one file for
    /// all.
    #[arg(long, value_name = "N")]
    sinks: Option<usize>,
    /// HTTP: the address the sink serves ILP over HTTP on (any path, either content type),
    /// e.g. 127.0.0.1:7771; every thread listens on it (several sinks: on consecutive ports
    /// from it). Required with `--transport http` when this process runs the sink, except
    /// with `--direct` (a free port then).
    #[arg(long)]
    sink_listen: Option<std::net::SocketAddr>,
    /// TLS: trust the CA certificates in this PEM file for every server we dial over TLS
    /// (a wss:// or https:// `--router`, or with `--direct` and `--sink-cert` our own sink).
    /// There is no system CA store: a TLS URL needs this or `--insecure`.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// TLS: accept any server certificate (no CA, name or date checked; the handshake's
    /// signatures still are). For tests and trusted networks; not with `--ca-file`.
    #[arg(long)]
    insecure: bool,
    /// TLS: present this certificate chain (PEM, leaf first) on every connection we dial over
    /// TLS, senders' and sinks' alike; with `--client-key`. The connector may then know the
    /// peer by it, and over BTP the tokens may be empty (`--sink bob:`).
    #[arg(long, value_name = "PEM", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// TLS: the private key of `--client-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// TLS: the sinks that listen serve TLS with this certificate chain (PEM, leaf first); with
    /// `--sink-key`. `--transport http`: the connector dials them at https://. `--direct` (BTP or
    /// HTTP): our senders dial the sink over TLS at 127.0.0.1, so the certificate must name that IP
    /// (with `--ca-file`, its CA), or give `--insecure`. Without it the sinks listen in plaintext.
    /// Not for BTP sinks behind a connector: they dial it (give `--router wss://…`).
    #[arg(long, value_name = "PEM", requires = "sink_key")]
    sink_cert: Option<PathBuf>,
    /// TLS: the private key of `--sink-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "sink_cert")]
    sink_key: Option<PathBuf>,
    /// Where the Prepares go: an ILP address the connector routes to the sink.
    #[arg(long, default_value = "g.router.bob")]
    destination: String,
    /// Spread the Prepares over N destinations (1 to 1000000): `<--destination>.0` …
    /// `<--destination>.{N-1}`, each sender connection walking them in turn.
    #[arg(long, value_name = "N")]
    destinations: Option<u32>,
    /// Take sink I (1-based) down T after the send clock starts, e.g. 5s:2 (repeatable): its
    /// connections close at once and it stays away (BTP: no redial; HTTP: its listener
    /// closes too) until an `--sink-up-at`.
    #[arg(long, value_name = "T:I", value_parser = parse_fault)]
    sink_down_at: Vec<Fault>,
    /// Bring sink I back T after the send clock starts, after its `--sink-down-at`
    /// (repeatable): BTP: it dials the connector again; HTTP: it listens again.
    #[arg(long, value_name = "T:I", value_parser = parse_fault)]
    sink_up_at: Vec<Fault>,
    /// How long to send: 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Open loop at this many Prepares per second in all; without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: how long before each intended send time the load thread stops sleeping and
    /// spins (polls its timers and sockets without parking), in µs (0 to 1000). A wake-up from
    /// sleep is late by the kernel's wake-up latency; the spin absorbs it, at the cost of a
    /// busy CPU for that long per send. 0: sleep only.
    #[arg(long, default_value_t = 100, value_name = "US")]
    pacer_spin_us: u64,
    /// How plaintext BTP connections are read and written. `glommio`: through glommio's
    /// sockets, a reader and a writer task each. `ring`: read through an io_uring ring of the
    /// load thread's own and written with `send` at once, as the router's cores do; the
    /// thread spins while answers are awaited or a send is near (`--pacer-spin-us`). `ring`
    /// keeps glommio's per-wake-up cost out of latency figures (BENCHMARKS.md); TLS and HTTP
    /// connections use glommio either way.
    #[arg(long, default_value = "glommio", value_parser = ["glommio", "ring"])]
    io: String,
    /// Prepares in flight per sender connection (the cap in open loop too). HTTP: requests
    /// pipelined on each keep-alive connection, answers matched in order. Our sink and the
    /// router answer a pipelined batch at once (the router reads up to its
    /// `http_pipeline_max`, 256 by default, per connection), but a server that serves a
    /// connection's requests one at a time gains nothing from depth: against it use
    /// `--window 1` (or a few) and as many `--connections` as Prepares should be in flight.
    #[arg(long, default_value_t = 512)]
    window: usize,
    /// Sender connections, shared out among the threads; BTP: as many sink connections, for
    /// every sink (over HTTP the connector opens the sinks' connections).
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// CPUs to run on, e.g. `1` or `2-3` (one pinned thread each; the supervising thread keeps
    /// to them too). Default: the last CPU.
    #[arg(long)]
    cpu_list: Option<String>,
    /// The amount of every Prepare.
    #[arg(long, default_value_t = 1)]
    amount: u64,
    /// Bytes of data in every Prepare (at least 8: a unique sequence number comes first).
    #[arg(long, default_value_t = 64)]
    data_bytes: usize,
    /// Every Prepare expires this long after it is sent.
    #[arg(long, default_value_t = 30_000)]
    expiry_ms: u64,
    /// Connect the sender straight to the sink, with no connector between: the harness's
    /// ceiling.
    #[arg(long)]
    direct: bool,
    /// With `--direct` over BTP: put a hop that only copies bytes between the sender and the
    /// sink, a thread on this CPU (not one of `--cpu-list`) that relays each TCP connection,
    /// spinning. The least any connector adds on this machine; the report has its CPU per
    /// round trip (`relay_cpu_us_per_packet`; `relay_busy_cpu_us_per_packet` without its idle
    /// spin). One load thread only.
    #[arg(long, value_name = "CPU", requires = "direct")]
    relay_cpu: Option<usize>,
    /// Which roles this process plays.
    #[arg(long, value_enum, default_value_t = RoleArg::Both)]
    role: RoleArg,
    /// Write the JSON report here. With sinks in this process it has `sinks`: per sink its
    /// `name`, `received`, `fulfilled`, `rejected`, `wrong_fulfillments`, `fulfilled_per_s`
    /// (one count per `timeline` row) and `down` (`from_s`/`until_s` on the timeline's
    /// clock, from when every thread had applied the change).
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Write a self-contained HTML report (charts) here; with several sinks, or one taken
    /// down, a chart of each sink's Fulfills per second too.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
    /// The connector's process id: its CPU time during the run is reported per packet.
    #[arg(long)]
    pub(crate) router_pid: Option<u32>,
    /// Sink: reject this fraction of Prepares (0..1) with `--sink-reject-code`.
    #[arg(long, default_value_t = 0.0)]
    sink_reject_fraction: f64,
    /// Sink: the ILP code of those Rejects.
    #[arg(long, default_value = "F99")]
    sink_reject_code: String,
    /// Sink: answer this fraction (0..1) with a wrong fulfillment.
    #[arg(long, default_value_t = 0.0)]
    sink_wrong_fraction: f64,
    /// Sink: hold every answer this long.
    #[arg(long, default_value_t = 0)]
    sink_delay_ms: u64,
    /// Sender: append the amount (8 bytes, little endian) of every valid Fulfill received to
    /// this file.
    #[arg(long)]
    sender_log: Option<PathBuf>,
    /// Sink: append the amount (8 bytes, little endian) of every Fulfill sent (with the
    /// right fulfillment) to this file; with several sinks, all of them to this one file.
    #[arg(long)]
    sink_log: Option<PathBuf>,
    /// Seed of the fulfillments (sender and sink must agree when run apart).
    #[arg(long, default_value_t = 0x1f2e_3d4c)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Transport {
    Btp,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RoleArg {
    Both,
    Send,
    Sink,
}

/// The longest `--pacer-spin-us`.
const PACER_SPIN_US_MAX: u64 = 1000;

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and ms, s or m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if !(seconds > 0.0 && seconds < 86_400.0) {
        return Err(format!("{text:?}: must be between 0 and a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `--sink-down-at` / `--sink-up-at`: `TIME:SINK`, the time as `--duration` takes it and the
/// sink 1-based (checked against the run in `sinks::schedule`).
fn parse_fault(text: &str) -> Result<Fault, String> {
    let (at, sink) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?}: expected TIME:SINK, e.g. 5s:2"))?;
    let sink = sink
        .parse()
        .map_err(|_| format!("{text:?}: the sink is a number from 1, e.g. 5s:2"))?;
    Ok(Fault {
        at: parse_duration(at)?,
        sink,
    })
}

/// `--router` for BTP: `ws://host:port[/path]` (also `btp+ws://`), with the router's URL
/// parser.
fn parse_url(text: &str) -> Result<BtpUrl, String> {
    url::parse(text, Scheme::Ws, None).map_err(|e| format!("--router {e}"))
}

/// `NAME:TOKEN` of `--{flag}`. An empty token is taken when `empty_refused` is `None`, else
/// refused with that reason.
fn parse_credentials(
    flag: &str,
    text: &str,
    empty_refused: Option<&str>,
) -> Result<(String, String), String> {
    let (name, token) = text
        .split_once(':')
        .ok_or_else(|| format!("--{flag} {text:?}: expected NAME:TOKEN"))?;
    if let Some(why) = empty_refused.filter(|_| token.is_empty()) {
        return Err(format!("--{flag}: the token is empty ({why})"));
    }
    Ok((name.to_owned(), token.to_owned()))
}

/// Why an empty token is refused for the sender (`sink` false) or the sinks: `None` where it
/// is taken, which is over BTP with `--client-cert` only (the certificate names the peer; the
/// `--direct` sink checks the sender's token).
fn empty_token_refused(
    http: bool,
    client_cert: bool,
    direct: bool,
    sink: bool,
) -> Option<&'static str> {
    if http {
        Some("ILP over HTTP sends the token as the Bearer token, and the sink requires it")
    } else if !client_cert {
        Some("over BTP an empty token is for a peer known by its --client-cert")
    } else if direct && !sink {
        Some("--direct: the sink checks the sender's token")
    } else {
        None
    }
}

/// `--X-cert` and `--X-key` together (clap requires each with the other).
fn key_pair<'a>(
    cert: (&'static str, &'a Option<PathBuf>),
    key: (&'static str, &'a Option<PathBuf>),
) -> Option<KeyPair<'a>> {
    match (cert.1, key.1) {
        (Some(cert_path), Some(key_path)) => Some(KeyPair {
            cert_flag: cert.0,
            cert: cert_path,
            key_flag: key.0,
            key: key_path,
        }),
        _ => None,
    }
}

fn parse_cpus(text: Option<&str>) -> Result<Vec<usize>, String> {
    let allowed = ilp_router::shard::allowed_cpus();
    let Some(text) = text else {
        return allowed
            .last()
            .map(|&c| vec![c])
            .ok_or_else(|| "cannot read the CPU affinity".to_string());
    };
    let cpus = ilp_router::cli::parse_cpu_list(text)?;
    if let Some(cpu) = cpus.iter().find(|c| !allowed.contains(c)) {
        return Err(format!(
            "--cpu-list: CPU {cpu} is not in the allowed set {allowed:?}"
        ));
    }
    Ok(cpus)
}

/// The parts of the command line the threads need.
pub(crate) struct CliShared {
    pub(crate) target: BtpUrl,
    /// `--transport http`: where the sender POSTs (none with `--direct` or without senders).
    pub(crate) http_target: Option<http::HttpTarget>,
    /// `--transport http` (the sinks listen where `sinks` says).
    pub(crate) http: bool,
    pub(crate) sender: (String, String),
    /// The run's sinks, by `SinkId` (one at least).
    pub(crate) sinks: Vec<SinkSpec>,
    /// `--sink-down-at` and `--sink-up-at`, sorted by time.
    pub(crate) faults: Vec<FaultEvent>,
    pub(crate) destination: String,
    pub(crate) destinations: Option<u32>,
    pub(crate) rate_per_conn: Option<f64>,
    /// Sender connections of the run, all threads together.
    pub(crate) senders_total: usize,
    /// Open loop: `--pacer-spin-us`.
    pub(crate) pacer_spin: Duration,
    /// `--io ring`.
    pub(crate) ring_io: bool,
    pub(crate) window: usize,
    pub(crate) amount: u64,
    pub(crate) data_bytes: usize,
    pub(crate) expiry_ms: u64,
    pub(crate) direct: bool,
    /// `--relay-cpu`: the relay's CPU (with `--direct`).
    pub(crate) relay_cpu: Option<usize>,
    pub(crate) seed: u64,
    pub(crate) sink_options: SinkOptions,
    pub(crate) sender_log: Option<PathBuf>,
    pub(crate) sink_log: Option<PathBuf>,
    /// The TLS of every connection we dial to a TLS URL (`target`, `http_target`, or with
    /// `--direct` the sink): the run's one client config. None when nothing is dialled over
    /// TLS.
    pub(crate) dial_tls: Option<tls::Client>,
    /// `--sink-cert`: the listening sinks (HTTP, `--direct`) serve TLS with it.
    pub(crate) listen_tls: Option<tls::Server>,
    /// Some connection of the run is TLS (the report's `tls`).
    pub(crate) tls: bool,
}

/// The run's TLS, from the flags: what the connections we dial and those our sinks accept
/// are wrapped in.
struct RunTls {
    dial: Option<tls::Client>,
    listen: Option<tls::Server>,
}

/// A command line whose flags agree with each other.
pub(crate) struct Validated {
    pub(crate) shared: CliShared,
    /// One a thread: its CPU and its share of the connections.
    pub(crate) specs: Vec<ThreadSpec>,
    /// `--cpu-list`, or its default.
    pub(crate) cpus: Vec<usize>,
}

impl Cli {
    /// Checks every flag, in the order the errors were always reported, and shares the
    /// connections out among the threads.
    pub(crate) fn validate(&self) -> Result<Validated, String> {
        let http = self.transport == Transport::Http;
        let target = if http {
            BtpUrl {
                host: String::new(),
                port: 0,
                path: String::new(),
                tls: false,
            }
        } else {
            parse_url(&self.router)?
        };
        let client_cert = self.client_cert.is_some();
        let refused = |sink| empty_token_refused(http, client_cert, self.direct, sink);
        let sender = parse_credentials("sender", &self.sender, refused(false))?;
        let sink_credentials = self
            .sink
            .iter()
            .map(|text| parse_credentials("sink", text, refused(true)))
            .collect::<Result<Vec<_>, _>>()?;
        check_address(self.destination.as_bytes())
            .map_err(|_| format!("--destination {:?} is not an ILP address", self.destination))?;
        let cpus = parse_cpus(self.cpu_list.as_deref())?;
        if self.connections == 0 || self.window == 0 {
            return Err("--connections and --window must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.sink_reject_fraction)
            || !(0.0..=1.0).contains(&self.sink_wrong_fraction)
        {
            return Err(
                "--sink-reject-fraction and --sink-wrong-fraction are fractions between 0 and 1"
                    .into(),
            );
        }
        let code = self.sink_reject_code.as_bytes();
        if code.len() != 3 || !code.iter().all(u8::is_ascii_alphanumeric) {
            return Err(format!(
                "--sink-reject-code {:?}: three ASCII letters or digits, like F99",
                self.sink_reject_code
            ));
        }
        if let Some(rate) = self.rate {
            if !(rate > 0.0 && rate.is_finite()) {
                return Err("--rate must be positive".into());
            }
        }
        if self.pacer_spin_us > PACER_SPIN_US_MAX {
            return Err(format!(
                "--pacer-spin-us {}: at most {PACER_SPIN_US_MAX}",
                self.pacer_spin_us
            ));
        }
        let (with_senders, with_sinks) = match self.role {
            RoleArg::Both => (true, true),
            RoleArg::Send => (true, false),
            RoleArg::Sink => (false, true),
        };
        if self.direct && !(with_senders && with_sinks) {
            return Err("--direct runs both roles in this process".into());
        }
        let http_target = if http && with_senders && !self.direct {
            Some(http::parse_http_url(&self.router)?)
        } else {
            None
        };
        if http && with_sinks && !self.direct && self.sink_listen.is_none() {
            return Err("--transport http: the sink needs --sink-listen ADDRESS:PORT".into());
        }
        if !http && self.sink_listen.is_some() {
            return Err(
                "--sink-listen is for --transport http (a BTP sink dials the connector)".into(),
            );
        }
        let sinks = sinks::specs(&sink_credentials, self.sinks, self.sink_listen)?;
        if self.direct && sinks.len() > 1 {
            return Err("--direct plays one sink: drop --sinks (or the extra --sink)".into());
        }
        if let Some(n) = self.destinations {
            if !(1..=DESTINATIONS_MAX).contains(&n) {
                return Err(format!(
                    "--destinations {n}: between 1 and {DESTINATIONS_MAX}"
                ));
            }
            // The longest of them is the one to check.
            let last = format!("{}.{}", self.destination, n - 1);
            check_address(last.as_bytes()).map_err(|_| {
                format!("--destinations {n}: {last:?} is not an ILP address (too long?)")
            })?;
        }
        let faults = sinks::schedule(
            &self.sink_down_at,
            &self.sink_up_at,
            sinks.len(),
            self.duration,
        )?;
        if !faults.is_empty() {
            if self.direct {
                return Err(
                    "--sink-down-at and --sink-up-at need a connector between (not --direct)"
                        .into(),
                );
            }
            if !with_sinks {
                return Err(
                    "--sink-down-at and --sink-up-at need the sinks in this process \
                     (--role both or sink)"
                        .into(),
                );
            }
            if self.sink_listen.is_some_and(|a| a.port() == 0) {
                return Err(
                    "--sink-listen: a sink brought back listens where it did: give a port, not 0"
                        .into(),
                );
            }
        }
        let tls = self.tls(http, with_sinks, &target, http_target.as_ref())?;
        let threads = cpus.len().min(self.connections.max(1));
        if let Some(cpu) = self.relay_cpu {
            self.check_relay(cpu, http, threads, &cpus)?;
        }
        let mut senders_before = 0;
        let specs: Vec<ThreadSpec> = (0..threads)
            .map(|i| {
                let share =
                    self.connections / threads + usize::from(i < self.connections % threads);
                let senders = if with_senders { share } else { 0 };
                senders_before += senders;
                ThreadSpec {
                    index: i,
                    cpu: cpus[i],
                    senders,
                    senders_before: senders_before - senders,
                    sinks: if with_sinks { share } else { 0 },
                }
            })
            .collect();
        let senders_total: usize = specs.iter().map(|s| s.senders).sum();
        let shared = CliShared {
            target,
            http_target,
            http,
            sender,
            sinks,
            faults,
            destination: self.destination.clone(),
            destinations: self.destinations,
            rate_per_conn: self.rate.map(|r| r / senders_total.max(1) as f64),
            senders_total,
            pacer_spin: Duration::from_micros(self.pacer_spin_us),
            ring_io: self.io == "ring",
            window: self.window,
            amount: self.amount,
            data_bytes: self.data_bytes,
            expiry_ms: self.expiry_ms,
            direct: self.direct,
            relay_cpu: self.relay_cpu,
            seed: self.seed,
            sink_options: SinkOptions {
                reject_fraction: self.sink_reject_fraction,
                reject_code: ErrorCode([code[0], code[1], code[2]]),
                wrong_fraction: self.sink_wrong_fraction,
                delay_ms: self.sink_delay_ms,
            },
            sender_log: self.sender_log.clone(),
            sink_log: self.sink_log.clone(),
            tls: tls.dial.is_some() || tls.listen.is_some(),
            dial_tls: tls.dial,
            listen_tls: tls.listen,
        };
        Ok(Validated {
            shared,
            specs,
            cpus,
        })
    }

    /// `--relay-cpu CPU`: over BTP, one load thread, on an allowed CPU no load thread takes
    /// (the relay spins: on a shared CPU it would take the load thread's time).
    fn check_relay(
        &self,
        cpu: usize,
        http: bool,
        threads: usize,
        cpus: &[usize],
    ) -> Result<(), String> {
        if http {
            return Err("--relay-cpu: over BTP only (the HTTP sink is dialled as it is)".into());
        }
        if threads > 1 {
            return Err(format!(
                "--relay-cpu: one load thread only ({threads} here: give one CPU in \
                 --cpu-list, or --connections 1)"
            ));
        }
        if !ilp_router::shard::allowed_cpus().contains(&cpu) {
            return Err(format!(
                "--relay-cpu {cpu}: not in the allowed set {:?}",
                ilp_router::shard::allowed_cpus()
            ));
        }
        if cpus.contains(&cpu) {
            return Err(format!(
                "--relay-cpu {cpu}: a CPU of its own, not one of --cpu-list {cpus:?}"
            ));
        }
        Ok(())
    }

    /// What is dialled over TLS, said as the flags that make it so; `None` when nothing is.
    /// `target` and `http_target` are the parsed `--router` (as `validate` has them).
    fn dialled_over_tls(
        &self,
        http: bool,
        target: &BtpUrl,
        http_target: Option<&http::HttpTarget>,
    ) -> Option<String> {
        let router = || format!("--router {}", self.router);
        if self.direct {
            self.sink_cert
                .is_some()
                .then(|| "--direct with --sink-cert (the senders dial the sink over TLS)".into())
        } else if http {
            http_target.filter(|t| t.tls).map(|_| router())
        } else {
            target.tls.then(router)
        }
    }

    /// The TLS flags against the rest, and the run's TLS configs from them (their files read
    /// here, once for the run).
    fn tls(
        &self,
        http: bool,
        with_sinks: bool,
        target: &BtpUrl,
        http_target: Option<&http::HttpTarget>,
    ) -> Result<RunTls, String> {
        let client = key_pair(
            ("--client-cert", &self.client_cert),
            ("--client-key", &self.client_key),
        );
        let sink = key_pair(
            ("--sink-cert", &self.sink_cert),
            ("--sink-key", &self.sink_key),
        );
        if sink.is_some() && !(http || self.direct) {
            return Err(
                "--sink-cert: a BTP sink dials the connector and listens only with \
                 --direct; for TLS to the connector give --router wss://…"
                    .into(),
            );
        }
        if sink.is_some() && !with_sinks {
            return Err("--sink-cert is for the sinks: --role both or sink".into());
        }
        let trust = match (self.insecure, &self.ca_file) {
            (true, Some(_)) => {
                return Err("--insecure and --ca-file: give one (--insecure checks no \
                            certificate)"
                    .into())
            }
            (true, None) => Some(Trust::Anyone),
            (false, Some(path)) => Some(Trust::CaFile(path)),
            (false, None) => None,
        };
        let dial = match (self.dialled_over_tls(http, target, http_target), trust) {
            (Some(what), None) => {
                return Err(format!(
                    "{what}: TLS needs --ca-file PEM (the CA that signed the server's \
                     certificate) or --insecure"
                ))
            }
            (Some(_), Some(trust)) => Some(tls::client(trust, client)?),
            (None, _) if trust.is_some() || client.is_some() => {
                return Err(
                    "--ca-file, --insecure and --client-cert are for connections \
                     dialled over TLS, and there are none: give --router wss://… or \
                     https://… (with --direct: --sink-cert)"
                        .into(),
                )
            }
            (None, _) => None,
        };
        let listen = sink.map(tls::server).transpose()?;
        Ok(RunTls { dial, listen })
    }

    /// The command line as the JSON report records it (`config`), with the CPUs it ran on, the
    /// number of sinks, and whether TLS was used.
    pub(crate) fn config_json(&self, cpus: &[usize], sinks: usize, tls: bool) -> Value {
        let mut config = json!({
            "transport": format!("{:?}", self.transport).to_lowercase(), "tls": tls,
            "sink_listen": self.sink_listen.map(|a| a.to_string()),
            "router": self.router, "destination": self.destination, "duration_s": self.duration.as_secs_f64(),
            "rate": self.rate, "window": self.window, "connections": self.connections, "amount": self.amount,
            "data_bytes": self.data_bytes, "expiry_ms": self.expiry_ms, "direct": self.direct,
            "relay_cpu": self.relay_cpu,
            "mode": if self.rate.is_some() { "open-loop" } else { "closed-loop" },
            "pacer_spin_us": self.rate.map(|_| self.pacer_spin_us),
            "role": format!("{:?}", self.role).to_lowercase(), "cpu_list": cpus,
            "sink_reject_fraction": self.sink_reject_fraction, "sink_reject_code": self.sink_reject_code,
            "sink_wrong_fraction": self.sink_wrong_fraction, "sink_delay_ms": self.sink_delay_ms,
            "sinks": sinks, "destinations": self.destinations,
        });
        let object = config.as_object_mut().expect("an object");
        for (key, faults) in [
            ("sink_down_at", &self.sink_down_at),
            ("sink_up_at", &self.sink_up_at),
        ] {
            if !faults.is_empty() {
                let written: Vec<String> = faults.iter().map(Fault::to_string).collect();
                object.insert(key.into(), json!(written));
            }
        }
        config
    }
}
