//! `[admin]`: defaults, and every error names its key.

use super::*;

const BASE: &str = "ilp_address = \"g.router\"\n";

fn admin(body: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(&format!("{BASE}[admin]\n{body}\n"))
}

#[track_caller]
fn refused(body: &str, key: &str, part: &str) {
    let message = admin(body).expect_err("must be refused").to_string();
    assert!(message.contains(key), "{message:?} should name {key:?}");
    assert!(message.contains(part), "{message:?} should say {part:?}");
}

#[test]
fn defaults_to_loopback_without_a_token() {
    assert!(Config::from_toml_str(BASE).unwrap().admin().is_none());
    let config = admin("").unwrap();
    let admin = config.admin().unwrap();
    assert_eq!(admin.listen.to_string(), ADMIN_LISTEN_DEFAULT);
    assert!(admin.token.is_none());
    assert!(!admin.metrics_token);
}

#[test]
fn off_loopback_needs_a_token_and_the_token_may_come_from_a_file() {
    refused(
        "listen = \"0.0.0.0:7780\"",
        "admin.listen",
        "not a loopback address",
    );
    let config = admin("listen = \"0.0.0.0:7780\"\ntoken = \"t0ken\"").unwrap();
    assert_eq!(
        config.admin().unwrap().token.as_ref().unwrap().expose(),
        "t0ken"
    );
    let file = std::env::temp_dir().join(format!("ilp-admin-token-{}", std::process::id()));
    std::fs::write(&file, "from-file\n").unwrap();
    let config = admin(&format!("token_file = \"{}\"", file.display())).unwrap();
    assert_eq!(
        config.admin().unwrap().token.as_ref().unwrap().expose(),
        "from-file"
    );
    std::fs::remove_file(&file).unwrap();
    refused(
        &format!("token_file = \"{}\"", file.display()),
        "admin.token_file",
        "cannot read",
    );
    refused(
        "token = \"a\"\ntoken_file = \"/x\"",
        "admin.token_file",
        "give one of them",
    );
    refused("token = \"\"", "admin.token", "empty");
    refused(
        "metrics_token = true",
        "admin.metrics_token",
        "no admin.token",
    );
    refused(
        "listen = \"localhost:7780\"",
        "admin.listen",
        "not an IP address",
    );
    refused("port = 1", "port", "unknown field");
    let secret = format!("{:?}", admin("token = \"s3cret\"").unwrap());
    assert!(!secret.contains("s3cret"), "the token is never printed");
}

#[test]
fn ilp_address_may_be_left_out_only_for_a_parent_to_fill_in() {
    let peers = "[[peers]]\nname = \"up\"\nrelation = \"parent\"\nasset_code = \"USD\"\n\
                 asset_scale = 9\nmax_balance = \"1\"\nbtp_url = \"ws://127.0.0.1:9\"\n\
                 outgoing_token = \"t\"\noutgoing_username = \"me\"\n";
    let message = Config::from_toml_str(peers).unwrap_err().to_string();
    assert!(message.contains("ilp_address"), "{message}");
    assert!(message.contains("ILDCP"), "{message}");
    let parent = Config::parent_to_ask(peers)
        .unwrap()
        .expect("a parent to ask");
    assert_eq!(parent.name, "up");
    assert_eq!(parent.username, "me");
    assert_eq!(parent.url.port, 9);
    let config = Config::from_toml_str_with_address(peers, Some("g.learned")).unwrap();
    assert_eq!(config.ilp_address(), "g.learned");
    assert_eq!(config.peers()[0].address, "g.learned.up");
    // With an address set, or without a parent to dial, there is nobody to ask.
    let set = format!("ilp_address = \"g.set\"\n{peers}");
    assert!(Config::parent_to_ask(&set).unwrap().is_none());
    let child = peers.replace("\"parent\"", "\"child\"");
    assert!(Config::parent_to_ask(&child).unwrap().is_none());
}
