//! `ilp-loadgen` over TLS on loopback, with certificates this test makes (rcgen: a CA, the
//! sink's certificate for `localhost` and 127.0.0.1 signed by it, a client certificate, and a
//! second CA that signed nothing of ours): `--direct` BTP and HTTP with TLS sinks
//! (`--sink-cert`) fulfil every Prepare and report `tls: true`; a CA that did not sign the
//! sink's certificate fails the run within seconds, naming the certificate problem; `--insecure`
//! takes any certificate; a sink in its own process serves HTTPS to a sender that dials it by
//! name; the TLS flags are checked against each other before anything is opened. Every run is
//! bounded.

mod common;

use common::io_uring_missing;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The longest any run here may take.
const RUN_WITHIN: Duration = Duration::from_secs(30);

/// A CA: its certificate and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate (PEM) for `names` and 127.0.0.1, and its key (PKCS#8 PEM).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The test's certificates in a scratch directory, removed when dropped: `ca.pem` (signed
/// `sink.pem`, key `sink.key`, and `client.pem`, key `client.key`) and `other-ca.pem`.
struct Certs(PathBuf);

impl Certs {
    fn new(name: &str) -> Certs {
        let dir =
            std::env::temp_dir().join(format!("ilp-loadgen-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new("ilp-loadgen test CA");
        let (sink_cert, sink_key) = ca.leaf(&["localhost"]);
        let (client_cert, client_key) = ca.leaf(&["alice.example"]);
        let files = [
            ("ca.pem", ca.pem.clone()),
            ("other-ca.pem", Ca::new("a CA that signed nothing").pem),
            ("sink.pem", sink_cert),
            ("sink.key", sink_key),
            ("client.pem", client_cert),
            ("client.key", client_key),
        ];
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        Certs(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).to_str().unwrap().to_owned()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a run ended.
struct Ended {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs ilp-loadgen with `args` to the end, within [`RUN_WITHIN`] (killed and failed past it).
fn run_loadgen(args: &[&str]) -> Ended {
    let began = Instant::now();
    let child = Command::new(common::loadgen())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut killed = common::Killed(child);
    let status = loop {
        if let Some(status) = killed.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            began.elapsed() < RUN_WITHIN,
            "ilp-loadgen {args:?} did not end within {RUN_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    std::io::Read::read_to_string(killed.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    std::io::Read::read_to_string(killed.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    Ended {
        status,
        stdout,
        stderr,
        took: began.elapsed(),
    }
}

/// Runs ilp-loadgen `args` with `--json` to the end; it must succeed. Its report and stdout.
fn run_report(args: &[&str], json: &Path) -> (Value, String) {
    let mut all = args.to_vec();
    all.extend(["--json", json.to_str().unwrap()]);
    let ended = run_loadgen(&all);
    assert!(
        ended.status.success(),
        "ilp-loadgen {all:?} failed: {}",
        ended.stderr
    );
    let report = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    (report, ended.stdout)
}

/// Every Prepare was sent and fulfilled, none lost, over TLS.
fn assert_all_fulfilled_over_tls(report: &Value, stdout: &str) {
    let fulfilled = report["fulfilled"].as_u64().unwrap();
    assert!(fulfilled > 500, "only {fulfilled} fulfilled: {report}");
    assert_eq!(report["sent"], report["fulfilled"], "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["timeouts"], 0, "{report}");
    assert_eq!(report["bad_fulfillments"], 0, "{report}");
    assert_eq!(report["ended_early"], false, "{report}");
    assert_eq!(report["config"]["tls"], true, "{report}");
    assert!(stdout.contains(", TLS)"), "the header says TLS: {stdout}");
}

/// The flags of a short open-loop `--direct` run at 2000 Prepares/s.
const SHORT_RUN: [&str; 7] = [
    "--direct",
    "--duration",
    "1s",
    "--rate",
    "2000",
    "--connections",
    "2",
];

#[test]
fn direct_btp_over_tls_fulfills_every_prepare() {
    if io_uring_missing("direct_btp_over_tls_fulfills_every_prepare") {
        return;
    }
    let certs = Certs::new("btp");
    let (sink_cert, sink_key, ca) = (
        certs.path("sink.pem"),
        certs.path("sink.key"),
        certs.path("ca.pem"),
    );
    let mut args = SHORT_RUN.to_vec();
    args.extend([
        "--sink-cert",
        &sink_cert,
        "--sink-key",
        &sink_key,
        "--ca-file",
        &ca,
    ]);
    let json = certs.0.join("btp.json");
    let (report, stdout) = run_report(&args, &json);
    assert_all_fulfilled_over_tls(&report, &stdout);
    assert_eq!(report["config"]["transport"], "btp");
    // The same run in plaintext says so.
    let (plain, stdout) = run_report(&SHORT_RUN, &json);
    assert_eq!(plain["config"]["tls"], false, "{plain}");
    assert!(stdout.contains(", no TLS)"), "{stdout}");
}

#[test]
fn a_ca_that_did_not_sign_the_sink_fails_the_run_naming_the_certificate() {
    if io_uring_missing("a_ca_that_did_not_sign_the_sink_fails_the_run_naming_the_certificate") {
        return;
    }
    let certs = Certs::new("wrong-ca");
    let (sink_cert, sink_key, other_ca) = (
        certs.path("sink.pem"),
        certs.path("sink.key"),
        certs.path("other-ca.pem"),
    );
    for transport in ["btp", "http"] {
        let mut args = SHORT_RUN.to_vec();
        args.extend([
            "--transport",
            transport,
            "--sink-cert",
            &sink_cert,
            "--sink-key",
            &sink_key,
            "--ca-file",
            &other_ca,
        ]);
        let ended = run_loadgen(&args);
        assert!(!ended.status.success(), "{transport}: {}", ended.stderr);
        assert!(
            ended.stderr.contains("invalid peer certificate")
                && ended.stderr.contains("UnknownIssuer"),
            "{transport}: the error names the certificate problem: {}",
            ended.stderr
        );
        assert!(
            ended.stderr.contains("--ca-file"),
            "{transport}: {}",
            ended.stderr
        );
        assert!(
            ended.took < Duration::from_secs(10),
            "{transport}: failed only after {:?}",
            ended.took
        );
    }
}

#[test]
fn direct_http_over_tls_fulfills_every_prepare() {
    if io_uring_missing("direct_http_over_tls_fulfills_every_prepare") {
        return;
    }
    let certs = Certs::new("http");
    let paths: Vec<String> = ["sink.pem", "sink.key", "ca.pem", "client.pem", "client.key"]
        .iter()
        .map(|f| certs.path(f))
        .collect();
    let mut args = SHORT_RUN.to_vec();
    args.extend([
        "--transport",
        "http",
        "--window",
        "16",
        "--sink-cert",
        &paths[0],
        "--sink-key",
        &paths[1],
        "--ca-file",
        &paths[2],
        // Presented if asked for; our sink does not ask, so this checks the files load.
        "--client-cert",
        &paths[3],
        "--client-key",
        &paths[4],
    ]);
    let (report, stdout) = run_report(&args, &certs.0.join("http.json"));
    assert_all_fulfilled_over_tls(&report, &stdout);
    assert_eq!(report["config"]["transport"], "http");
    assert_eq!(report["http_errors"], serde_json::json!({}), "{report}");
}

#[test]
fn insecure_takes_a_certificate_no_given_ca_vouches_for() {
    if io_uring_missing("insecure_takes_a_certificate_no_given_ca_vouches_for") {
        return;
    }
    let certs = Certs::new("insecure");
    let (sink_cert, sink_key) = (certs.path("sink.pem"), certs.path("sink.key"));
    let mut args = SHORT_RUN.to_vec();
    args.extend([
        "--sink-cert",
        &sink_cert,
        "--sink-key",
        &sink_key,
        "--insecure",
    ]);
    let (report, stdout) = run_report(&args, &certs.0.join("insecure.json"));
    assert_all_fulfilled_over_tls(&report, &stdout);
}

/// A sink in a process of its own serves HTTPS (`--sink-cert`), as it would for a connector;
/// a sender dials it at `https://localhost:port` (SNI by name) with `--ca-file`.
#[test]
fn a_separate_https_sink_serves_a_sender_that_dials_it_by_name() {
    if io_uring_missing("a_separate_https_sink_serves_a_sender_that_dials_it_by_name") {
        return;
    }
    let certs = Certs::new("apart");
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let (sink_cert, sink_key, ca) = (
        certs.path("sink.pem"),
        certs.path("sink.key"),
        certs.path("ca.pem"),
    );
    let sink = common::Killed(
        Command::new(common::loadgen())
            .args([
                "--role",
                "sink",
                "--transport",
                "http",
                "--sink-listen",
                &listen,
                "--sink",
                "bob:bob-token",
                "--sink-cert",
                &sink_cert,
                "--sink-key",
                &sink_key,
                "--duration",
                "20s",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_for_port(port, "the TLS sink");
    let url = format!("https://localhost:{port}/accounts/alice/ilp");
    let args = [
        "--role",
        "send",
        "--transport",
        "http",
        "--router",
        &url,
        "--sender",
        "alice:bob-token",
        "--ca-file",
        &ca,
        "--duration",
        "1s",
        "--rate",
        "1000",
        "--connections",
        "1",
        "--window",
        "8",
    ];
    let (report, stdout) = run_report(&args, &certs.0.join("apart.json"));
    assert_all_fulfilled_over_tls(&report, &stdout);
    drop(sink);
}

/// A run that must stop at its command line (status 2) with an error holding every one of
/// `needles`.
fn assert_refused(args: &[&str], needles: &[&str]) {
    let ended = run_loadgen(args);
    assert_eq!(ended.status.code(), Some(2), "{args:?}: {}", ended.stderr);
    for needle in needles {
        assert!(
            ended.stderr.contains(needle),
            "{args:?}: the error should say {needle:?}: {}",
            ended.stderr
        );
    }
}

#[test]
fn tls_flags_are_checked_before_anything_is_opened() {
    let certs = Certs::new("flags");
    let missing = certs.path("missing.pem");
    let (sink_cert, ca) = (certs.path("sink.pem"), certs.path("ca.pem"));
    assert_refused(
        &["--router", "wss://127.0.0.1:1"],
        &["--router wss://127.0.0.1:1", "--ca-file", "--insecure"],
    );
    assert_refused(
        &["--router", "wss://127.0.0.1:1", "--ca-file", &missing],
        &["--ca-file", &missing],
    );
    assert_refused(
        &[
            "--router",
            "wss://127.0.0.1:1",
            "--insecure",
            "--ca-file",
            &ca,
        ],
        &["--insecure and --ca-file"],
    );
    assert_refused(&["--ca-file", &ca], &["dialled over TLS"]);
    assert_refused(
        &["--sink-cert", &sink_cert, "--sink-key", &missing],
        &["--sink-cert", "--direct"],
    );
    assert_refused(
        &[
            "--direct",
            "--sink-cert",
            &sink_cert,
            "--sink-key",
            &missing,
            "--insecure",
        ],
        &["--sink-key", &missing, "private key"],
    );
    // A key that is not the certificate's.
    let client_key = certs.path("client.key");
    assert_refused(
        &[
            "--direct",
            "--sink-cert",
            &sink_cert,
            "--sink-key",
            &client_key,
            "--insecure",
        ],
        &["--sink-cert", "--sink-key", &client_key],
    );
    // An empty token: only over BTP with a client certificate.
    assert_refused(
        &["--sink", "bob:"],
        &["--sink: the token is empty", "--client-cert"],
    );
    let client_cert = certs.path("client.pem");
    assert_refused(
        &[
            "--router",
            "wss://127.0.0.1:1",
            "--ca-file",
            &missing,
            "--client-cert",
            &client_cert,
            "--client-key",
            &client_key,
            "--sink",
            "bob:",
        ],
        // Past the token: stopped by the missing CA file.
        &["--ca-file", &missing],
    );
}
