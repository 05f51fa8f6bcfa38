//! The built `ilp-router` binary: `decode` against every shared vector, stdin, empty input,
//! and `--help`.

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn router() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ilp-router"))
}

fn json_of(output: &Output) -> Value {
    let text = String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8");
    assert_eq!(
        text.lines().count(),
        1,
        "exactly one line of JSON: {text:?}"
    );
    serde_json::from_str(&text).expect("stdout is JSON")
}

fn decode_stdin(kind: &str, input: &[u8]) -> Output {
    let mut child = router()
        .args(["decode", "--kind", kind, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run ilp-router");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn decode_matches_every_vector() {
    for (file, kind) in [("ilp-packets.json", "ilp"), ("btp-packets.json", "btp")] {
        let path = format!("{}/tests/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
        let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for vector in json["vectors"].as_array().unwrap() {
            let name = vector["name"].as_str().unwrap();
            let hex = vector["hex"].as_str().unwrap();
            let output = router()
                .args(["decode", "--kind", kind, hex])
                .output()
                .unwrap();
            let printed = json_of(&output);
            if vector["valid"] == Value::Bool(true) {
                assert_eq!(output.status.code(), Some(0), "{name}");
                assert_eq!(printed, vector["decoded"], "{name}");
            } else {
                assert_eq!(output.status.code(), Some(1), "{name}");
                assert_eq!(printed["error"], vector["error"], "{name}");
                assert!(
                    printed["detail"].as_str().is_some_and(|d| !d.is_empty()),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn decode_reads_stdin() {
    let hex = "0d21000000000000000000000000000000000000000000000000000000000000000000\n";
    let output = decode_stdin("ilp", hex.as_bytes());
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json_of(&output)["fulfillment"], "0".repeat(64));
}

#[test]
fn empty_input_is_the_empty_input_error() {
    for output in [
        router()
            .args(["decode", "--kind", "ilp", ""])
            .output()
            .unwrap(),
        decode_stdin("btp", b""),
        decode_stdin("ilp", b"\n"),
    ] {
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(json_of(&output)["error"], "empty_input");
    }
}

#[test]
fn bad_hex_is_reported() {
    let output = router()
        .args(["decode", "--kind", "ilp", "0c6"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json_of(&output)["error"], "invalid_hex");
}

#[test]
fn help_names_the_subcommands() {
    let output = router().arg("--help").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("decode"), "{text}");
    let output = router().args(["decode", "--help"]).output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("--kind"), "{text}");
}

/// The README's complete configuration example is a valid config, and `check-config` says so.
#[test]
fn readme_config_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```toml\n").expect("a TOML block in README.md") + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let example = &readme[start..end];
    let config = ilp_router::config::Config::from_toml_str(example)
        .unwrap_or_else(|e| panic!("README example: {e}"));
    assert_eq!(config.peers().len(), 3);
    let path = std::env::temp_dir().join(format!("readme-example-{}.toml", std::process::id()));
    std::fs::write(&path, example).unwrap();
    let output = router()
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // And the example config the main job runs, and the one the .deb installs.
    for example in ["/tuning/router.toml", "/packaging/ilp-router.toml"] {
        let path = format!("{}{example}", env!("CARGO_MANIFEST_DIR"));
        let output = router().args(["check-config", &path]).output().unwrap();
        assert!(
            output.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Under systemd (`NOTIFY_SOCKET`), the router says READY=1 once every core listens and
/// STOPPING=1 when SIGTERM starts the shutdown.
#[test]
fn systemd_hears_ready_then_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = std::env::temp_dir().join(format!("ilp-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/router.toml"))
            .unwrap()
            .replace("127.0.0.1:7768", &format!("127.0.0.1:{port}"));
    let config_path = dir.join("router.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut child = router()
        .args([
            "run",
            "--config",
            config_path.to_str().unwrap(),
            "--cores",
            "1",
        ])
        .args(["--log-level", "warn"])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let received = socket.recv(&mut buf);
    let ready = received.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    if ready.as_deref().ok() != Some("READY=1") {
        let _ = child.kill();
        let _ = child.wait();
        panic!("expected READY=1, got {ready:?} (a router without io_uring cannot start)");
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "listening when ready"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let n = socket
        .recv(&mut buf)
        .expect("STOPPING=1 before the timeout");
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "STOPPING=1");
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_names_the_bad_key() {
    let path = std::env::temp_dir().join(format!("bad-config-{}.toml", std::process::id()));
    std::fs::write(&path, "ilp_address = \"g.router\"\nbogus_key = 1\n").unwrap();
    let output = router()
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bogus_key"), "{stderr}");
}
