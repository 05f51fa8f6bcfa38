//! The config's unit tests: every key's errors name the key, the examples parse, and what
//! the config hands the engine is consistent.
//!
//! Just over 800 lines: one test per config key family, each naming its key; a split would
//! only divide the key list.

use super::*;
use crate::engine::Engine;

/// A small valid config; tests append to it or replace lines in it.
const BASE: &str = r#"
ilp_address = "g.router"
[listen]
btp = "127.0.0.1:7768"
[[peers]]
name = "alice"
auth_tokens = ["alice-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000"
[[peers]]
name = "bob"
auth_tokens = ["bob-secret"]
relation = "parent"
asset_code = "EUR"
asset_scale = 6
max_balance = "2000"
[rates]
USD = "1"
EUR = "1.08"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text)
}

/// `BASE` with `from` replaced by `to` (which must occur once).
fn with(from: &str, to: &str) -> String {
    assert_eq!(
        BASE.matches(from).count(),
        1,
        "{from:?} occurs once in BASE"
    );
    BASE.replacen(from, to, 1)
}

/// The error of `text`, which must be refused; also checks the message names `key`.
#[track_caller]
fn error(text: &str, key: &str) -> String {
    let e = parse(text).expect_err("must be refused");
    let message = e.to_string();
    assert!(message.contains(key), "{message:?} should name {key:?}");
    message
}

#[track_caller]
fn assert_has(message: &str, part: &str) {
    assert!(
        message.contains(part),
        "{message:?} should contain {part:?}"
    );
}

#[test]
fn state_table() {
    let base = EXAMPLE.split("\n[state]").next().unwrap();
    let config = parse(base).unwrap();
    assert_eq!(config.state().dir, None, "no [state]: balances in memory");
    assert_eq!(config.state().msync_interval_ms, MSYNC_INTERVAL_MS_DEFAULT);
    let config = parse(&format!("{base}\n[state]\ndir = \"s\"\n")).unwrap();
    assert_eq!(config.state().dir, Some(PathBuf::from("s")));
    let mut config = parse(&format!("{base}\n[state]\nmsync_interval_ms = 0\n")).unwrap();
    assert_eq!(
        (config.state().dir.clone(), config.state().msync_interval_ms),
        (None, 0)
    );
    config.set_state_dir(PathBuf::from("t"));
    config.set_msync_interval_ms(5);
    assert_eq!(config.state().dir, Some(PathBuf::from("t")));
    assert_eq!(config.state().msync_interval_ms, 5);
    let error = parse(&format!("{base}\n[state]\ndirectory = \"s\"\n")).unwrap_err();
    assert!(error.to_string().contains("directory"), "{error}");
    let error = parse(&format!("{base}\n[state]\ndir = \"\"\n")).unwrap_err();
    assert!(error.to_string().contains("state.dir"), "{error}");
}

#[test]
fn example_parses() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.ilp_address(), "g.example.router");
    assert_eq!(config.spread(), Decimal::parse("0.002").unwrap());
    assert_eq!(config.listen_btp(), Some("127.0.0.1:7768".parse().unwrap()));
    let alice = config.peer_id("alice").unwrap();
    let bob = config.peer_id("bob").unwrap();
    assert_eq!((alice, bob), (PeerId(0), PeerId(1)));
    assert_eq!(config.default_route(), Some(bob));
    let a = config.peer(alice);
    assert_eq!(a.address, "g.example.router.alice");
    assert_eq!(a.relation, Relation::Child);
    assert_eq!(a.auth_tokens.len(), 2);
    assert_eq!(a.auth_tokens[0].expose(), "alice-token-2");
    assert_eq!(a.max_balance, 1_000_000_000_000);
    assert_eq!(a.max_packet_amount, 10_000_000_000);
    assert!(a.dial().is_none());
    let b = config.peer(bob);
    assert_eq!(b.relation, Relation::Parent);
    assert!(b.auth_tokens.is_empty());
    assert_eq!(b.max_packet_amount, u64::MAX);
    let dial = b.dial().unwrap();
    assert!(b.http().is_none());
    assert_eq!(dial.url.to_string(), "ws://127.0.0.1:9000/");
    assert_eq!(dial.token.expose(), "router-token-at-bob");
    assert_eq!(dial.username, "router");
    assert_eq!(config.rate("EUR"), Some(Decimal::parse("1.08").unwrap()));
    assert_eq!(
        config.state(),
        &StateConfig {
            dir: Some(PathBuf::from("/var/lib/ilp-router")),
            msync_interval_ms: 1000
        }
    );
    assert_eq!(config.limits().connections_per_peer_max, 8);
    assert_eq!(config.limits().reconnect_max_ms, 30_000);
    assert_eq!(config.limits().tick_ms, 5);
    assert!(config.warnings().is_empty());
    let table = config.route_table();
    assert_eq!(table.lookup_peer(b"g.bob.x"), Some(bob));
    assert_eq!(table.lookup_peer(b"g.example.router.alice.x"), Some(alice));
    assert_eq!(table.lookup_peer(b"g.elsewhere"), Some(bob));
    assert_eq!(table.lookup_peer(b"test.elsewhere"), None);
}

#[test]
fn defaults() {
    let config = parse(BASE).unwrap();
    assert!(config.spread().is_zero());
    assert_eq!(config.default_route(), None);
    assert_eq!(config.min_message_window_ms(), 1000);
    assert_eq!(config.max_hold_time_ms(), 30_000);
    assert_eq!(config.limits(), &Limits::default());
    let alice = config.peer(PeerId(0));
    assert_eq!(alice.max_packet_amount, u64::MAX);
    assert!(alice.dial().is_none());
    assert!(matches!(alice.outgoing, Outgoing::None));
    let limits = Limits::default();
    let expected: [(&str, u64); 33] = [
        ("pending_per_core_max", 65_536),
        ("in_flight_per_link_max", 4096),
        ("ring_capacity", 8192),
        ("frame_len_max", 65_536),
        ("connections_per_peer_max", 64),
        ("links_max", 4096),
        ("auth_timeout_ms", 10_000),
        ("bad_frames_max", 10),
        ("tick_ms", 5),
        ("spin_us", 50),
        ("spin_max_us", 1000),
        ("shutdown_grace_ms", 5000),
        ("reconnect_min_ms", 100),
        ("reconnect_max_ms", 10_000),
        ("lease_chunk_divisor", 16),
        ("http_connections_per_peer_max", 64),
        ("http_requests_per_connection_max", 64),
        ("http_connections_min", 1),
        ("http_client_idle_timeout_ms", 4000),
        ("link_queue_bytes_max", 8 << 20),
        ("write_timeout_ms", 10_000),
        ("unauthenticated_max", 1024),
        ("http_request_timeout_ms", 10_000),
        ("http_idle_timeout_ms", 30_000),
        ("http_pipeline_max", 256),
        ("btp_ping_interval_ms", 5000),
        ("btp_pings_missed_max", 3),
        ("pending_per_peer_percent", 50),
        ("peer_packets_per_second", 0),
        ("peer_amount_per_second", 0),
        ("peers_max", 1024),
        ("routes_per_peer_max", 10_000),
        ("route_path_max", 32),
    ];
    assert_eq!(Limits::KEYS.len(), expected.len());
    for (key, value) in expected {
        assert_eq!(limits.get(key), Some(value), "{key}");
        let (min, max) = Limits::range(key).unwrap();
        assert!(min <= value && value <= max, "{key}");
    }
    check_limits(&limits, 1000).unwrap();
}

#[test]
fn no_peers_is_allowed() {
    let config = parse("ilp_address = \"g.router\"\n").unwrap();
    assert!(config.peers().is_empty());
    assert!(config.route_table().is_empty());
}

#[test]
fn ilp_address_errors() {
    for bad in ["router", "g..router", "g.rou ter", "x.router", "g."] {
        let text = with("\"g.router\"", &format!("{bad:?}"));
        let m = error(&text, "ilp_address: ");
        assert_has(&m, "not a valid ILP address");
    }
}

#[test]
fn spread_errors() {
    let ok = parse(&format!("spread = \"0.002\"\n{BASE}")).unwrap();
    assert_eq!(ok.spread().to_string(), "0.002");
    for bad in ["abc", "-0.1", "1e-3", " 0.1", ""] {
        let m = error(&format!("spread = {bad:?}\n{BASE}"), "spread: ");
        assert_has(&m, "not a decimal number");
    }
    for bad in ["1", "1.0", "2.5"] {
        let m = error(&format!("spread = {bad:?}\n{BASE}"), "spread: ");
        assert_has(&m, "not below 1");
    }
}

#[test]
fn window_and_hold_errors() {
    let m = error(
        &format!("min_message_window_ms = 40000\n{BASE}"),
        "min_message_window_ms: ",
    );
    assert_has(&m, "over max_hold_time_ms (30000)");
    error(
        &format!("min_message_window_ms = 0\n{BASE}"),
        "min_message_window_ms: 0 is below the minimum 1",
    );
    error(
        &format!("max_hold_time_ms = 86400001\n{BASE}"),
        "max_hold_time_ms: 86400001 is over the maximum",
    );
}

#[test]
fn listen_errors() {
    let m = error(
        &with("\"127.0.0.1:7768\"", "\"localhost:7768\""),
        "listen.btp: ",
    );
    assert_has(&m, "not an IP address and port");
    let ok = parse(&with("\"127.0.0.1:7768\"", "\"[::]:7768\"")).unwrap();
    assert_eq!(ok.listen_btp().unwrap().port(), 7768);
}

#[test]
fn peer_name_errors() {
    error(
        &with("name = \"bob\"", "name = \"\""),
        "peers[1].name: empty",
    );
    let m = error(
        &with("name = \"bob\"", "name = \"bo.b\""),
        "peers[1].name: ",
    );
    assert_has(&m, "'.' at byte 2");
    error(&with("name = \"bob\"", "name = \"b b\""), "peers[1].name: ");
    error(&with("name = \"bob\"", "name = \"bøb\""), "peers[1].name: ");
    let long = "a".repeat(1020);
    let m = error(
        &with("name = \"bob\"", &format!("name = \"{long}\"")),
        "peers[1].name: ",
    );
    assert_has(&m, "over the maximum 1023");
    let m = error(
        &with("name = \"bob\"", "name = \"alice\""),
        "peers[1].name: ",
    );
    assert_has(&m, "already the name of peers[0]");
}

#[test]
fn token_errors() {
    let m = error(
        &with("auth_tokens = [\"bob-secret\"]", "auth_tokens = []"),
        "peers[1].auth_tokens: ",
    );
    assert_has(&m, "could never authenticate");
    let m = error(
        &with("auth_tokens = [\"bob-secret\"]\n", ""),
        "peers[1].auth_tokens: ",
    );
    assert_has(&m, "no token");
    error(
        &with("[\"bob-secret\"]", "[\"bob-secret\", \"\"]"),
        "peers[1].auth_tokens[1]: empty token",
    );
    error(
        &with("[\"bob-secret\"]", "[\"bob-secret\", \"bob-secret\"]"),
        "peers[1].auth_tokens[1]: the same token as peers[1].auth_tokens[0]",
    );
}

#[test]
fn duplicate_token_across_peers() {
    let m = error(
        &with("[\"bob-secret\"]", "[\"bob-2\", \"alice-secret\"]"),
        "peers[1].auth_tokens[1]: ",
    );
    assert_has(&m, "peers[0].auth_tokens[0]");
    assert_has(&m, "\"alice\"");
    assert_has(&m, "\"bob\"");
    assert!(!m.contains("alice-secret"), "the token leaks: {m}");
}

#[test]
fn dial_only_peer_needs_no_token() {
    let text = with(
        "auth_tokens = [\"bob-secret\"]\n",
        "btp_url = \"btp+ws://bob.example:9000/ilp\"\noutgoing_token = \"t\"\n",
    );
    let config = parse(&text).unwrap();
    let bob = config.peer(PeerId(1));
    assert!(bob.auth_tokens.is_empty());
    let dial = bob.dial().unwrap();
    assert_eq!(
        dial.url,
        BtpUrl {
            host: "bob.example".into(),
            port: 9000,
            path: "/ilp".into(),
            tls: false,
        }
    );
    assert_eq!(dial.username, "");
}

#[test]
fn peer_without_listener_or_url() {
    let text = with("[listen]\nbtp = \"127.0.0.1:7768\"\n", "");
    let m = error(&text, "peers[0].btp_url: ");
    assert_has(&m, "listen.btp");
}

#[test]
fn relation_and_asset_errors() {
    let m = error(
        &with("relation = \"parent\"", "relation = \"upstream\""),
        "peers[1].relation: ",
    );
    assert_has(&m, "\"child\", \"peer\", \"parent\"");
    error(
        &with("asset_code = \"EUR\"", "asset_code = \"\""),
        "peers[1].asset_code: empty",
    );
    error(
        &with("asset_code = \"EUR\"", "asset_code = \"EUR \""),
        "peers[1].asset_code: ",
    );
    error(
        &with("asset_scale = 6", "asset_scale = 19"),
        "peers[1].asset_scale: 19 is over the maximum 18",
    );
    error(
        &with("asset_scale = 6", "asset_scale = 300"),
        "peers[1].asset_scale: 300 is over the maximum 18",
    );
    parse(&with("asset_scale = 6", "asset_scale = 18")).unwrap();
}

#[test]
fn amount_errors() {
    for bad in [
        "+5", "-5", " 5", "5 ", "1e9", "12a", "1_000", "1.0", "", "０",
    ] {
        let text = with("max_balance = \"2000\"", &format!("max_balance = {bad:?}"));
        error(&text, "peers[1].max_balance: ");
        let text = format!(
            "{}max_packet_amount = {bad:?}\n",
            BASE.split("[rates]").next().unwrap()
        );
        error(&text, "peers[1].max_packet_amount: ");
    }
    let m = error(
        &with("\"2000\"", "\"18446744073709551616\""),
        "peers[1].max_balance: ",
    );
    assert_has(&m, "over the maximum 18446744073709551615");
    let max = parse(&with("\"2000\"", "\"18446744073709551615\"")).unwrap();
    assert_eq!(max.peer(PeerId(1)).max_balance, u64::MAX);
    // An integer instead of a string: a shape error, with the line.
    let m = error(
        &with("\"2000\"", "2000"),
        "line 18, column 15: max_balance: ",
    );
    assert_has(&m, "expected a string");
}

#[test]
fn btp_url_errors() {
    let dial = |url: &str| {
        with(
            "auth_tokens = [\"bob-secret\"]\n",
            &format!("btp_url = {url:?}\noutgoing_token = \"t\"\n"),
        )
    };
    // The CA we trust for it: given, so that the test does not depend on the system's store.
    let dir = std::env::temp_dir().join(format!("ilp-config-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertificateParams::new(vec!["ca.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    for for_tls in ["wss://bob.example:443", "btp+wss://bob.example:443"] {
        let text = format!("{}\n[tls]\nca_file = {ca_file:?}\n", dial(for_tls));
        let config = parse(&text).unwrap();
        assert!(config.peer(PeerId(1)).dial().unwrap().url.tls);
        assert!(config.tls().dial(PeerId(1)).is_some());
    }
    for (bad, why) in [
        ("http://bob.example:80", "not a ws:// or wss:// URL"),
        ("ws://bob.example", "no port"),
        ("ws://:9000", "no host"),
        ("ws://bob.example:0", "not a port"),
        ("ws://bob.example:+80", "not a port"),
        ("ws://bob.example:99999", "not a port"),
        ("ws://user:pw@bob.example:80", "credentials"),
        ("ws://bo b:80", "the host holds"),
        ("ws://[::1:80", "[addr]:port"),
        ("ws://[zz]:80", "not an IPv6 address"),
        ("ws://bob:80/a b", "the path holds"),
    ] {
        let m = error(&dial(bad), "peers[1].btp_url: ");
        assert_has(&m, why);
    }
    let config = parse(&dial("ws://[::1]:9000")).unwrap();
    let url = &config.peer(PeerId(1)).dial().unwrap().url;
    assert_eq!((url.host.as_str(), url.port), ("::1", 9000));
    assert_eq!(url.to_string(), "ws://[::1]:9000/");
    parse(&dial("WS://bob.example:80/")).unwrap();
}

#[test]
fn http_url_for_peers_we_post_to() {
    let http = |text: &str| Config::from_toml_str(&with("auth_tokens = [\"bob-secret\"]\n", text));
    let config = http("http_url = \"http://127.0.0.1:8080/accounts/router/ilp\"\noutgoing_token = \"user:pass\"\n").unwrap();
    let dial = config.peers()[1].http().unwrap();
    assert_eq!(
        (
            dial.url.host.as_str(),
            dial.url.port,
            dial.url.path.as_str()
        ),
        ("127.0.0.1", 8080, "/accounts/router/ilp")
    );
    assert_eq!(dial.token.expose(), "user:pass");
    assert!(config.peers()[1].dial().is_none());
    assert!(matches!(config.peers()[1].outgoing, Outgoing::Http(_)));
    let m = http("http_url = \"http://a:1\"\n").unwrap_err().to_string();
    assert_has(&m, "peers[1].outgoing_token: required with http_url");
    // https:// with the system's CAs: where the system has none, the error says to give them.
    match http("http_url = \"https://a:1\"\noutgoing_token = \"t\"\n") {
        Ok(config) => assert!(config.peers()[1].http().unwrap().url.tls),
        Err(e) => assert_has(&e.to_string(), "tls.ca_file: not set, and the system's CA"),
    }
    let m = http("http_url = \"http://a:1\"\nbtp_url = \"ws://a:2\"\noutgoing_token = \"t\"\n")
        .unwrap_err()
        .to_string();
    assert_has(&m, "peers[1].http_url: set together with btp_url");
    let m = http("http_url = \"http://a\"\noutgoing_token = \"t\"\n")
        .unwrap_err()
        .to_string();
    assert_has(&m, "no port");
    let m = http("http_url = \"http://a:1\"\noutgoing_token = \"t\"\nbtp_dial = \"single\"\n")
        .unwrap_err()
        .to_string();
    assert_has(&m, "only used with btp_url");
}

#[test]
fn btp_dial_per_core_or_single() {
    let dial = |text: &str| {
        let config = Config::from_toml_str(&with(
            "auth_tokens = [\"bob-secret\"]\n",
            &format!("btp_url = \"ws://bob:80\"\noutgoing_token = \"t\"\n{text}"),
        ))
        .unwrap();
        config.peers()[1].dial().unwrap().per_core
    };
    assert!(dial(""), "per core by default");
    assert!(dial("btp_dial = \"per_core\"\n"));
    assert!(!dial("btp_dial = \"single\"\n"));
    let m = error(
        &with(
            "auth_tokens = [\"bob-secret\"]\n",
            "btp_url = \"ws://bob:80\"\noutgoing_token = \"t\"\nbtp_dial = \"two\"\n",
        ),
        "peers[1].btp_dial: ",
    );
    assert_has(&m, "\"single\"");
    error(
        &with(
            "relation = \"parent\"",
            "relation = \"parent\"\nbtp_dial = \"single\"",
        ),
        "peers[1].btp_dial: ",
    );
}

#[test]
fn outgoing_token_errors() {
    let m = error(
        &with(
            "auth_tokens = [\"bob-secret\"]\n",
            "btp_url = \"ws://bob:80\"\n",
        ),
        "peers[1].outgoing_token: ",
    );
    assert_has(&m, "required with btp_url");
    error(
        &with(
            "auth_tokens = [\"bob-secret\"]\n",
            "btp_url = \"ws://bob:80\"\noutgoing_token = \"\"\n",
        ),
        "peers[1].outgoing_token: empty",
    );
    let m = error(
        &with(
            "relation = \"parent\"",
            "relation = \"parent\"\noutgoing_token = \"t\"",
        ),
        "peers[1].outgoing_token: ",
    );
    assert_has(&m, "nor peers[1].http_url is");
    error(
        &with(
            "relation = \"parent\"",
            "relation = \"parent\"\noutgoing_username = \"r\"",
        ),
        "peers[1].outgoing_username: ",
    );
}

#[test]
fn route_errors() {
    let route = |prefix: &str, peer: &str| {
        format!("{BASE}[[routes]]\nprefix = {prefix:?}\npeer = {peer:?}\n")
    };
    let m = error(&route("g.bob", "carol"), "routes[0].peer: ");
    assert_has(&m, "no peer is named \"carol\"; the peers are alice, bob");
    let m = error(&route("g..bob", "bob"), "routes[0].prefix: ");
    assert_has(&m, "neither an ILP address nor a bare scheme");
    error(&route("bob", "bob"), "routes[0].prefix: ");
    let twice = format!(
        "{}[[routes]]\nprefix = \"g.bob\"\npeer = \"alice\"\n",
        route("g.bob", "bob")
    );
    let m = error(&twice, "routes[1].prefix: ");
    assert_has(&m, "also the prefix of routes[0]");
    // A bare scheme is a valid prefix.
    parse(&route("g", "bob")).unwrap();
}

#[test]
fn default_route_errors() {
    let m = error(
        &format!("default_route = \"carol\"\n{BASE}"),
        "default_route: ",
    );
    assert_has(&m, "no peer is named \"carol\"");
    let ok = parse(&format!("default_route = \"bob\"\n{BASE}")).unwrap();
    assert_eq!(ok.default_route(), Some(PeerId(1)));
    assert_eq!(ok.route_table().lookup_peer(b"g.nowhere"), Some(PeerId(1)));
}

#[test]
fn rate_errors() {
    let m = error(&with("EUR = \"1.08\"", "EUR = \"1,08\""), "rates.EUR: ");
    assert_has(&m, "not a decimal number");
    let m = error(&with("EUR = \"1.08\"", "EUR = \"0.000\""), "rates.EUR: ");
    assert_has(&m, "zero");
    error(
        &with("EUR = \"1.08\"", "\"E R\" = \"-1\""),
        "rates.\"E R\": ",
    );
    // Digits enough that no exact rate fits 128 bits.
    let huge = "1234567890123456789012345678901234567.1";
    let m = error(
        &with("EUR = \"1.08\"", &format!("EUR = \"{huge}\"")),
        "rates.USD: ",
    );
    assert_has(&m, "no exact rate");
}

#[test]
fn peer_without_rate_is_allowed() {
    let config = parse(&with("EUR = \"1.08\"\n", "")).unwrap();
    assert_eq!(config.rate("EUR"), None);
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1);
    assert_has(&warnings[0], "peers[1] (bob)");
    // The engine takes it (and answers T00 between USD and EUR peers).
    let _ = Engine::new(config.engine_config(CoreId(0), 1), 0);
}

#[test]
fn limit_errors() {
    let limits = |body: &str| format!("{BASE}[limits]\n{body}\n");
    error(
        &limits("ring_capacity = 0"),
        "limits.ring_capacity: 0 is below the minimum 1",
    );
    error(
        &limits("frame_len_max = 63"),
        "limits.frame_len_max: 63 is below the minimum 64",
    );
    error(
        &limits("frame_len_max = 16777217"),
        "limits.frame_len_max: 16777217 is over the maximum 16777216",
    );
    error(
        &limits("http_pipeline_max = 1025"),
        "limits.http_pipeline_max: 1025 is over the maximum 1024",
    );
    let m = error(&limits("tick_ms = 2000"), "limits.tick_ms: ");
    assert_has(&m, "over min_message_window_ms (1000)");
    let m = error(
        &limits("reconnect_min_ms = 20000"),
        "limits.reconnect_min_ms: ",
    );
    assert_has(&m, "over limits.reconnect_max_ms (10000)");
    error(
        &limits("links_max = 10"),
        "limits.connections_per_peer_max: 64 is over limits.links_max (10)",
    );
    error(
        &limits("http_connections_per_peer_max = 2\nhttp_connections_min = 3"),
        "limits.http_connections_min: 3 is over limits.http_connections_per_peer_max (2)",
    );
    // spin_us may be 0: park at once.
    let config = parse(&limits("spin_us = 0\ntick_ms = 1")).unwrap();
    assert_eq!(config.limits().spin_us, 0);
    assert_eq!(config.limits().tick_ms, 1);
    // Negative: a shape error.
    error(&limits("tick_ms = -1"), "line 23, column 11: tick_ms: ");
}

#[test]
fn unknown_keys() {
    let m = error(&format!("colour = \"red\"\n{BASE}"), "colour");
    assert_has(&m, "line 1, column 1");
    assert_has(&m, "unknown field");
    let m = error(
        &with("asset_scale = 6", "asset_scale = 6\nmax_blance = \"1\""),
        "max_blance",
    );
    assert_has(&m, "line 18, column 1:");
    let m = error(&format!("{BASE}[limits]\ntick = 5\n"), "tick");
    assert_has(&m, "line 23, column 1:");
    assert_has(&m, "unknown field");
    error(&with("btp = ", "port = 1\nbtp = "), "port");
    error(
        &format!("{BASE}[[routes]]\nprefix = \"g.x\"\npeer = \"bob\"\nvia = \"x\"\n"),
        "via",
    );
    let m = error(&format!("{BASE}[extra]\n"), "extra");
    assert_has(&m, "line 22, column 2:");
    // A missing key is named too.
    error(
        &with("relation = \"parent\"\n", ""),
        "missing field `relation`",
    );
}

#[test]
fn implicit_routes() {
    let config = parse(BASE).unwrap();
    assert_eq!(
        config.routes(),
        &[
            Route {
                prefix: "g.router.alice".into(),
                hop: Hop::Peer(PeerId(0)),
                implicit: true
            },
            Route {
                prefix: "g.router.bob".into(),
                hop: Hop::Peer(PeerId(1)),
                implicit: true
            },
        ]
    );
    let table = config.route_table();
    assert_eq!(table.lookup_peer(b"g.router.bob"), Some(PeerId(1)));
    assert_eq!(table.lookup_peer(b"g.router.bob.wallet.1"), Some(PeerId(1)));
    assert_eq!(table.lookup_peer(b"g.router.bobby"), None);
    assert_eq!(table.lookup_peer(b"g.router"), None);

    // An explicit route with exactly bob's address wins: no implicit one is added.
    let text = format!("{BASE}[[routes]]\nprefix = \"g.router.bob\"\npeer = \"alice\"\n");
    let config = parse(&text).unwrap();
    assert_eq!(config.routes().len(), 2);
    assert_eq!(
        config.routes()[0],
        Route {
            prefix: "g.router.bob".into(),
            hop: Hop::Peer(PeerId(0)),
            implicit: false
        }
    );
    assert_eq!(config.routes()[1].prefix, "g.router.alice");
    assert_eq!(
        config.route_table().lookup_peer(b"g.router.bob.x"),
        Some(PeerId(0))
    );

    // A route to something longer does not replace the implicit one.
    let text = format!("{BASE}[[routes]]\nprefix = \"g.router.bob.x\"\npeer = \"alice\"\n");
    let config = parse(&text).unwrap();
    assert_eq!(config.routes().len(), 3);
    let table = config.route_table();
    assert_eq!(table.lookup_peer(b"g.router.bob.x.y"), Some(PeerId(0)));
    assert_eq!(table.lookup_peer(b"g.router.bob.z"), Some(PeerId(1)));
}

#[test]
fn engine_config_is_consistent() {
    let text = format!(
        "{}{}",
        BASE.replace("[rates]", "[[peers]]\nname = \"carol\"\nauth_tokens = [\"c\"]\nrelation = \"peer\"\nasset_code = \"USD\"\nasset_scale = 2\nmax_balance = \"5\"\n[rates]"),
        "[limits]\npending_per_core_max = 100\ntick_ms = 7\nlease_chunk_divisor = 10\n"
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.peers().len(), 3);
    let cores = 2;
    let engines: Vec<EngineConfig> = (0..cores)
        .map(|c| config.engine_config(CoreId(c as u16), cores))
        .collect();
    for (c, engine) in engines.iter().enumerate() {
        assert_eq!(engine.core, CoreId(c as u16));
        assert_eq!(engine.cores, cores);
        assert_eq!(engine.address, b"g.router");
        assert_eq!(engine.pending_max, 100);
        assert_eq!(engine.tick_ms, 7);
        assert_eq!(engine.min_message_window_ms, 1000);
        assert_eq!(engine.max_hold_time_ms, 30_000);
        assert_eq!(engine.peers, engines[0].peers, "same peers on every core");
        assert_eq!(
            engine.prices,
            vec![
                ("EUR".to_owned(), Decimal::parse("1.08").unwrap()),
                ("USD".to_owned(), Decimal::ONE)
            ]
        );
        let homes: Vec<CoreId> = engine.peers.iter().map(|p| p.home).collect();
        assert_eq!(homes, [CoreId(0), CoreId(1), CoreId(0)]);
        for (i, p) in engine.peers.iter().enumerate() {
            assert_eq!(p.home, config.home_core(PeerId(i as u16), cores));
        }
        let chunks: Vec<u64> = engine.peers.iter().map(|p| p.lease_chunk).collect();
        assert_eq!(chunks, [100, 200, 1], "max_balance / 10, at least 1");
        assert_eq!(engine.peers[2].asset_scale, 2);
        assert_eq!(engine.routes.len(), 3);
    }
    // The engine accepts what the config produces.
    for engine in engines {
        let _ = Engine::new(engine, 0);
    }
}

#[test]
fn limits_set() {
    let mut limits = Limits::default();
    limits.set("tick_ms", 10).unwrap();
    assert_eq!(limits.tick_ms, 10);
    limits.set("frame_len_max", 1 << 20).unwrap();
    assert_eq!(limits.frame_len_max, 1 << 20);
    assert_eq!(limits.get("frame_len_max"), Some(1 << 20));
    let e = limits.set("tick", 10).unwrap_err();
    assert_eq!(e.key(), Some("limits.tick"));
    assert_has(&e.to_string(), "no such limit");
    assert_has(&e.to_string(), "tick_ms");
    let e = limits.set("tick_ms", 0).unwrap_err();
    assert_has(&e.to_string(), "limits.tick_ms: 0 is below the minimum 1");
    assert_eq!(limits.tick_ms, 10, "unchanged on error");
    assert_eq!(limits.get("nope"), None);

    // Through the config, the checks between limits apply as well.
    let mut config = parse(BASE).unwrap();
    config.set_limit("reconnect_max_ms", 60_000).unwrap();
    assert_eq!(config.limits().reconnect_max_ms, 60_000);
    let e = config.set_limit("tick_ms", 5000).unwrap_err();
    assert_has(&e.to_string(), "over min_message_window_ms");
    assert_eq!(config.limits().tick_ms, 5, "unchanged on error");
}

#[test]
fn load_names_the_file() {
    let dir = std::env::temp_dir().join(format!("ilp-router-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, EXAMPLE).unwrap();
    assert_eq!(Config::load(&good).unwrap().peers().len(), 2);
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, with("asset_scale = 6", "asset_scale = 19")).unwrap();
    let m = Config::load(&bad).unwrap_err().to_string();
    assert_has(&m, "bad.toml: peers[1].asset_scale: 19");
    std::fs::write(&bad, "ilp_address = \"g.x\"\nnope = 1\n").unwrap();
    let m = Config::load(&bad).unwrap_err().to_string();
    assert_has(&m, "bad.toml: line 2, column 1: unknown field `nope`");
    let missing = dir.join("missing.toml");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert_has(&e.to_string(), "missing.toml");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn secrets_are_not_printed() {
    let config = parse(EXAMPLE).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("alice-token"), "{debug}");
    assert!(!debug.contains("router-token-at-bob"), "{debug}");
}
