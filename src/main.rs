//! The `ilp-router` command.

use clap::Parser;
use ilp_router::cli::{parse_cpu_list, AdminAction, AdminArgs, Cli, Command, KindArg, RunArgs};
use ilp_router::config::Config;
use ilp_router::decode::{self, Kind};
use ilp_router::shard::{self, RunOptions};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(*args),
        Command::CheckConfig { file, diff } => match diff {
            Some(old) => diff_configs(&old, &file),
            None => check_config(&file),
        },
        Command::Decode { kind, hex } => run_decode(kind, &hex),
        Command::Balances {
            state_dir: Some(dir),
            ..
        } => balances(&dir),
        Command::Balances { etcd, prefix, .. } => shared_balances(&etcd, &prefix),
        Command::Admin(args) => admin(args),
    }
}

/// `ilp-router admin`: one request to the admin API, its answer on stdout.
fn admin(args: AdminArgs) -> ExitCode {
    let (address, token) = match (&args.config, &args.url) {
        (Some(file), _) => match load(file) {
            Ok(config) => match config.admin() {
                Some(admin) => (
                    admin.listen.to_string(),
                    admin.token.as_ref().map(|t| t.expose().to_owned()),
                ),
                None => {
                    eprintln!("ilp-router admin: {} has no [admin] table", file.display());
                    return ExitCode::from(1);
                }
            },
            Err(e) => {
                eprintln!("ilp-router admin: {e}");
                return ExitCode::from(1);
            }
        },
        (None, Some(url)) => (
            url.clone(),
            args.token
                .clone()
                .or_else(|| std::env::var("ILP_ROUTER_ADMIN_TOKEN").ok()),
        ),
        (None, None) => unreachable!("clap requires --config or --url"),
    };
    let encode = ilp_router::admin::percent_encode;
    let (method, path) = match &args.action {
        AdminAction::Health => ("GET", "/health".to_owned()),
        AdminAction::Ready => ("GET", "/ready".to_owned()),
        AdminAction::Metrics => ("GET", "/metrics".to_owned()),
        AdminAction::Peers => ("GET", "/peers".to_owned()),
        AdminAction::Routes => ("GET", "/routes".to_owned()),
        AdminAction::Explain { destination } => (
            "GET",
            format!("/routes/explain?destination={}", encode(destination)),
        ),
        AdminAction::Config => ("GET", "/config".to_owned()),
        AdminAction::Drain { peer } => ("POST", format!("/peers/{}/drain", encode(peer))),
        AdminAction::Undrain { peer } => ("POST", format!("/peers/{}/undrain", encode(peer))),
        AdminAction::Reload => ("POST", "/reload".to_owned()),
        AdminAction::Settle { peer, .. } => {
            ("POST", format!("/peers/{}/settlements", encode(peer)))
        }
    };
    let body = match &args.action {
        AdminAction::Settle {
            amount,
            direction,
            key,
            ..
        } => serde_json::json!({
            "amount": amount,
            "direction": direction,
            "idempotency_key": key,
        })
        .to_string(),
        _ => String::new(),
    };
    let answer = ilp_router::admin::client::request_with(
        &address,
        method,
        &path,
        token.as_deref(),
        body.as_bytes(),
    );
    match answer {
        Ok((status, body)) => {
            print!("{body}");
            if !body.ends_with('\n') {
                println!();
            }
            if (200..300).contains(&status) {
                ExitCode::SUCCESS
            } else {
                eprintln!("ilp-router admin: {method} {path}: HTTP {status}");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("ilp-router admin: {address}: {e}");
            ExitCode::from(1)
        }
    }
}

/// `check-config --diff OLD NEW`: both must be valid; prints each change and whether a
/// reload applies it; exit 0 when a reload would apply all of them, 1 otherwise.
fn diff_configs(old: &Path, new: &Path) -> ExitCode {
    let (old, new) = match (load(old), load(new)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("ilp-router check-config: {e}");
            return ExitCode::from(1);
        }
    };
    let changes = old.diff(&new);
    if changes.is_empty() {
        println!("no changes");
    }
    for change in &changes {
        let how = if change.live { "live   " } else { "restart" };
        println!("{how} {}", change.what);
    }
    if changes.iter().all(|c| c.live) {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "ilp-router check-config: a reload would be refused: some changes need a restart"
        );
        ExitCode::from(1)
    }
}

fn balances(dir: &Path) -> ExitCode {
    let journal = dir.join(ilp_router::settlements::JOURNAL);
    let settled = match ilp_router::settlements::Journal::read(&journal) {
        Ok(journal) => journal,
        Err(e) => {
            eprintln!("ilp-router balances: {e}");
            return ExitCode::from(1);
        }
    };
    match ilp_router::state::balances(dir) {
        Ok(mut balances) => {
            // Settlements are journalled apart from the ledger rows.
            for (name, posted) in &mut balances {
                *posted += settled.sum(name);
            }
            println!("{}", ilp_router::state::balances_json(&balances));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ilp-router balances: {e}");
            ExitCode::from(1)
        }
    }
}

/// `balances --etcd`: every shared peer's record in the shared store.
fn shared_balances(etcd: &[String], prefix: &str) -> ExitCode {
    use ilp_router::cluster::{etcd::EtcdClient, read_all};
    let prefix = prefix.trim_end_matches('/');
    let records = EtcdClient::new(etcd, std::time::Duration::from_secs(2))
        .and_then(|mut client| read_all(&mut client, prefix));
    match records {
        Ok(records) => {
            let peers: Vec<serde_json::Value> = records
                .iter()
                .map(|(name, record)| {
                    let mut value = record.to_json();
                    value["name"] = serde_json::Value::String(name.clone());
                    value["posted"] = serde_json::Value::String(record.posted().to_string());
                    value["ceilings"] = serde_json::Value::String(record.ceilings().to_string());
                    value
                })
                .collect();
            println!("{}", serde_json::json!({ "peers": peers }));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ilp-router balances: {e}");
            ExitCode::from(1)
        }
    }
}

fn load(file: &Path) -> Result<Config, String> {
    Config::load(file).map_err(|e| e.to_string())
}

/// Loads the config; when it leaves `ilp_address` out and names a parent to dial, first asks
/// that parent for our address (ILDCP), retrying with a growing pause until it answers: no
/// core starts, so nothing is forwarded, before the address is known.
fn load_or_learn(file: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let parent = Config::parent_to_ask(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let Some(parent) = parent else {
        return load(file);
    };
    let mut pause = std::time::Duration::from_millis(500);
    let learned = loop {
        match ilp_router::ildcp::ask(&parent.url, &parent.username, parent.token.expose()) {
            Ok(learned) => break learned,
            Err(e) => {
                tracing::warn!(parent = %parent.name, "asking for our address (ILDCP): {e}; again in {pause:?}");
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_secs(30));
            }
        }
    };
    tracing::info!(
        parent = %parent.name,
        address = %learned.address,
        asset = %learned.asset_code,
        scale = learned.asset_scale,
        "learned our address from the parent (ILDCP)"
    );
    Config::load_with_address(file, Some(&learned.address)).map_err(|e| e.to_string())
}

/// Hands the memory freed since start (the parse of a large config: its text and TOML tree
/// are several times the config it leaves) back to the system, so that it does not stay in
/// the process's RSS for its whole life. glibc keeps freed heap memory otherwise.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the system; no pointer is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn run(args: RunArgs) -> ExitCode {
    let filter = match args.log_level.parse::<tracing::Level>() {
        Ok(level) => level,
        Err(_) => {
            eprintln!(
                "ilp-router: --log-level {:?}: use error, warn, info, debug or trace",
                args.log_level
            );
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let mut config = match load_or_learn(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ilp-router: {e}");
            return ExitCode::from(1);
        }
    };
    for (key, value) in args.limits.overrides() {
        if let Err(e) = config.set_limit(key, value) {
            eprintln!("ilp-router: --{}: {e}", key.replace('_', "-"));
            return ExitCode::from(2);
        }
    }
    // The same overrides, for every config a reload reads.
    let limits: Vec<(&'static str, u64)> = args.limits.overrides();
    let (state_dir, msync_ms) = (args.state_dir.clone(), args.msync_interval_ms);
    let overrides: shard::Overrides = std::sync::Arc::new(move |config: &mut Config| {
        for &(key, value) in &limits {
            config.set_limit(key, value)?;
        }
        if let Some(dir) = &state_dir {
            config.set_state_dir(dir.clone());
        }
        if let Some(ms) = msync_ms {
            config.set_msync_interval_ms(ms);
        }
        Ok(())
    });
    if let Some(dir) = args.state_dir {
        config.set_state_dir(dir);
    }
    if let Some(ms) = args.msync_interval_ms {
        config.set_msync_interval_ms(ms);
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    release_freed_memory();
    let cpu_list = match args.cpu_list.as_deref().map(parse_cpu_list).transpose() {
        Ok(list) => list,
        Err(e) => {
            eprintln!("ilp-router: {e}");
            return ExitCode::from(2);
        }
    };
    let cpus = match shard::select_cpus(args.cores, cpu_list.as_deref()) {
        Ok(cpus) => cpus,
        Err(e) => {
            eprintln!("ilp-router: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        ?cpus,
        address = config.ilp_address(),
        peers = config.peers().len(),
        "starting"
    );
    match shard::run(
        config,
        RunOptions {
            cpus,
            btp_port_per_core: args.btp_port_per_core,
            config_path: Some(args.config.clone()),
            overrides: Some(overrides),
        },
    ) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ilp-router: {e}");
            ExitCode::from(1)
        }
    }
}

fn check_config(file: &Path) -> ExitCode {
    match load(file) {
        Ok(config) => {
            println!(
                "{}: ok: address {}, {} peers, {} routes",
                file.display(),
                config.ilp_address(),
                config.peers().len(),
                config.routes().len()
            );
            for warning in config.warnings() {
                println!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ilp-router: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_decode(kind: KindArg, hex: &str) -> ExitCode {
    let text = if hex == "-" {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("ilp-router decode: cannot read stdin: {e}");
            return ExitCode::from(2);
        }
        text
    } else {
        hex.to_owned()
    };
    let bytes = match decode::parse_hex(&text) {
        Ok(bytes) => bytes,
        Err(detail) => {
            println!(
                "{}",
                serde_json::json!({ "error": "invalid_hex", "detail": detail })
            );
            return ExitCode::from(1);
        }
    };
    let kind = match kind {
        KindArg::Ilp => Kind::Ilp,
        KindArg::Btp => Kind::Btp,
    };
    match decode::decode(kind, &bytes) {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("{}", decode::error_json(error));
            ExitCode::from(1)
        }
    }
}
