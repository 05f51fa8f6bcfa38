//! How a load thread opens its connections. BTP (`connect_all`): the sinks dial the
//! connector first (`ThreadSinks::dial`, every sink with its own credentials), so it knows
//! where to send before Prepares arrive, then the senders; each waits for BTP auth
//! (`wait_open`), all within 10 s. `--direct` over BTP is `direct`'s. ILP over HTTP
//! (`connect_all_http`): the sinks listen, then the senders dial. Every connection is opened
//! with the same `Opener`: the thread's plan, ring and counters, and the run's TLS client
//! config for `wss://` and `https://` (and for the `--direct` sink's `--sink-cert`).

use crate::conn::{self, Ring, Role, Setup, Shared as Conn};
use crate::direct;
use crate::http;
use crate::plan::Plan;
use crate::sinks::thread::ThreadSinks;
use crate::stats::Stats;
use crate::tls;
use crate::worker::{Common, Link, ThreadSpec};
use ilp_router::link::url::BtpUrl;
use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What every connection of a thread is opened with: the thread's plan (until the clock
/// starts), the ring of fulfillments, the thread's counters and the run's TLS client config.
#[derive(Debug, Clone)]
pub(crate) struct Opener {
    pub(crate) plan: Rc<Plan>,
    pub(crate) ring: Rc<Ring>,
    pub(crate) stats: Rc<RefCell<Stats>>,
    /// What a `wss://` or `https://` connection is wrapped in (`CliShared::dial_tls`).
    pub(crate) tls: Option<tls::Client>,
}

/// `--transport btp`: this thread's sink connections (kept in `sinks`), then its sender
/// connections (returned), all authenticated.
pub(crate) async fn connect_all(
    spec: &ThreadSpec,
    common: &Common,
    opener: &Opener,
    sinks: &ThreadSinks,
) -> Result<Vec<Conn>, String> {
    let cli = &common.cli;
    let deadline = Instant::now() + Duration::from_secs(10);
    if cli.direct {
        let conns = direct::connect(spec, cli, opener, deadline).await?;
        let (sink_conns, senders): (Vec<Conn>, Vec<Conn>) = conns
            .into_iter()
            .partition(|c| matches!(c.borrow().role(), Role::Sink(_)));
        sinks.adopt(sink_conns);
        return Ok(senders);
    }
    // Sinks first, so the connector knows where to send before Prepares arrive.
    if spec.sinks > 0 {
        sinks.dial(deadline).await?;
    }
    let ids = (0..spec.senders).map(|i| (spec.index * 64 + i) as u64);
    let senders = opener
        .dial_many(
            Role::Sender,
            ids,
            &cli.sender,
            &cli.target,
            "sender connection",
        )
        .await?;
    wait_open(senders, deadline, "a sender").await
}

/// `--transport http`: the sinks listen (every thread on each sink's address, or with
/// `--direct` and no `--sink-listen` on a free port of its own), then the senders dial the
/// connector's URL, or the sink with `--direct`.
pub(crate) async fn connect_all_http(
    spec: &ThreadSpec,
    common: &Common,
    opener: &Opener,
    sinks: &ThreadSinks,
) -> Result<Vec<Link>, String> {
    let cli = &common.cli;
    let sink_port = if spec.sinks > 0 {
        Some(sinks.listen()?)
    } else {
        None
    };
    let target = match (&cli.http_target, sink_port) {
        (Some(target), _) => target.clone(),
        (None, Some(port)) if cli.direct => BtpUrl {
            host: "127.0.0.1".into(),
            port,
            path: "/".into(),
            tls: cli.listen_tls.is_some(),
        },
        _ => return Ok(Vec::new()),
    };
    let target = Rc::new(target);
    let token: Rc<str> = Rc::from(cli.sender.1.as_str());
    let mut senders = Vec::new();
    for i in 0..spec.senders {
        let sender = http::dial(
            Rc::clone(&opener.plan),
            Rc::clone(&opener.ring),
            Rc::clone(&opener.stats),
            (spec.index * 64 + i) as u64,
            Rc::clone(&target),
            Rc::clone(&token),
            opener.tls.clone(),
        )
        .await
        .map_err(|e| format!("sender connection to {}: {e}", target.host_port()))?;
        senders.push(Link::HttpSender(sender));
    }
    Ok(senders)
}

impl Opener {
    /// Dials one BTP connection to `target` (over TLS when it is `wss://`).
    pub(crate) async fn dial(&self, setup: Setup, target: &BtpUrl) -> io::Result<Conn> {
        conn::dial(
            Rc::clone(&self.plan),
            Rc::clone(&self.ring),
            Rc::clone(&self.stats),
            setup,
            target,
            self.tls.as_ref(),
        )
        .await
    }

    /// Dials one BTP connection per id to `target` with `credentials`.
    pub(crate) async fn dial_many(
        &self,
        role: Role,
        ids: impl Iterator<Item = u64>,
        credentials: &(String, String),
        target: &BtpUrl,
        what: &str,
    ) -> Result<Vec<Conn>, String> {
        let mut conns = Vec::new();
        for id in ids {
            let setup = Setup {
                role,
                id,
                username: credentials.0.clone(),
                token: credentials.1.clone(),
            };
            let c = self
                .dial(setup, target)
                .await
                .map_err(|e| format!("{what} to {}: {e}", target.host_port()))?;
            conns.push(c);
        }
        Ok(conns)
    }
}

/// Waits until every connection has finished BTP auth or closed: an error if time ran out or
/// the connector refused one (`who`: whose connections these are, for the message).
pub(crate) async fn wait_open(
    conns: Vec<Conn>,
    deadline: Instant,
    who: &str,
) -> Result<Vec<Conn>, String> {
    let ok = conn::wait_until(deadline, || {
        conns
            .iter()
            .all(|c| c.borrow().opened || c.borrow().closing)
    })
    .await;
    if !ok {
        return Err(format!(
            "a connection of {who} did not authenticate within 10 s"
        ));
    }
    if conns.iter().any(|c| !c.borrow().opened) {
        return Err(format!(
            "the connector refused the BTP auth of {who} (check --sender/--sink/--sinks \
             credentials)"
        ));
    }
    Ok(conns)
}
