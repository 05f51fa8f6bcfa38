//! `ilp-loadgen`: measures what an ILP connector really forwards.
//!
//! A *sender* connects to the connector as a BTP peer and sends Prepares; a *sink* connects as
//! another peer and fulfills what reaches it. Both roles run in one process by default
//! (`--role send|sink` runs one of them). Thread per core: every `--cpu-list` CPU runs a
//! pinned executor with its share of the connections, its own histograms and counters; they
//! are merged only at the end. Closed loop (a window of Prepares in flight per connection)
//! without `--rate`; open loop with it, latency counted from each Prepare's intended send
//! time, and each Prepare sent at that time to within a few microseconds (`pacer`; the
//! sender's own lateness is reported beside the latency).
//!
//! `--transport http` speaks ILP over HTTP instead (RFC 35, synchronous mode): the sender
//! POSTs Prepares to the `--router` URL and the sink serves HTTP on `--sink-listen`.
//!
//! TLS (rustls, TLS 1.3 and 1.2): a `wss://` or `https://` `--router` is dialled over TLS (by
//! the senders, and over BTP by the sinks too), the URL's host the name the certificate must
//! hold. Whom to trust: `--ca-file PEM` (there is no system CA store) or `--insecure` (any
//! certificate; the handshake's signatures are still checked), one of them required.
//! `--client-cert PEM --client-key PEM` presents a certificate on every TLS connection we dial
//! (over BTP a peer so known may have an empty token, `--sink bob:`). `--sink-cert PEM
//! --sink-key PEM` makes the sinks that listen serve TLS: over HTTP the connector then dials
//! them at `https://`, and with `--direct` (BTP or HTTP) our senders dial the sink over TLS.
//! The report's `config.tls` and the summary's first line say whether TLS was used; the
//! configs are built once per run (`tls`).
//!
//! To front a connector cluster, one run plays several sinks (`--sinks N`, or `--sink`
//! repeated), each a peer of the connector with its own credentials, spreads its Prepares
//! over many destinations (`--destinations N`), takes sinks down and back up on a schedule
//! (`--sink-down-at`, `--sink-up-at`), and reports every sink's counts second by second: the
//! rules are in `sinks`.
//!
//! `--direct --relay-cpu CPU` puts a hop that only copies bytes between the sender and the
//! sink (`relay`, a spinning thread on that CPU with the router's way of reading sockets): the
//! least any connector adds on the machine, to set a router's figure against.
//!
//! The modules, from the top: `cli` (flags and their validation), `run` (the main thread:
//! threads, clock, progress, exit status), `summary` (the JSON report and the text summary),
//! `report` and `report_sinks` (the HTML report), `worker` (one load thread), `connect` and
//! `direct` (how a thread opens its connections), `relay` (`--relay-cpu`), `tls` (the TLS configs, and the stream that
//! is plain TCP or TLS), `sinks` (the sinks and their faults), `pacer` (the open loop's
//! schedule and its timing), `plan` (what every connection knows), `conn` (BTP) and `http`
//! (ILP over HTTP) (the connections), `stats` (counters and histograms).

mod answers;
mod cli;
mod conn;
mod connect;
mod direct;
mod hot;
mod http;
mod pacer;
mod plan;
mod relay;
mod report;
mod report_sinks;
mod run;
mod sinks;
mod stats;
mod summary;
mod tls;
mod worker;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ilp-loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
