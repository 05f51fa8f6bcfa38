//! How a load thread opens its connections. BTP (`connect_all`): the sinks dial the
//! connector first, so it knows where to send before Prepares arrive, then the senders; each
//! waits for BTP auth (`wait_open`), all within 10 s. `--direct` over BTP is `direct`'s.
//! ILP over HTTP (`connect_all_http`): the sink listens, then the senders dial. Every
//! connection is opened with the same `Opener`: the thread's plan, ring and counters.

use crate::conn::{self, Ring, Role, Setup, Shared as Conn};
use crate::direct;
use crate::http;
use crate::plan::Plan;
use crate::stats::Stats;
use crate::worker::{Common, Link, ThreadSpec};
use ilp_router::link::url::BtpUrl;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What every connection of a thread is opened with: the thread's plan (until the clock
/// starts), the ring of fulfillments and the thread's counters.
pub(crate) struct Opener {
    pub(crate) plan: Rc<Plan>,
    pub(crate) ring: Rc<Ring>,
    pub(crate) stats: Rc<RefCell<Stats>>,
}

/// `--transport btp`: this thread's sink connections, then its sender connections, all
/// authenticated.
pub(crate) async fn connect_all(
    spec: &ThreadSpec,
    common: &Common,
    opener: &Opener,
) -> Result<Vec<Conn>, String> {
    let cli = &common.cli;
    let deadline = Instant::now() + Duration::from_secs(10);
    if cli.direct {
        return direct::connect(spec, cli, opener, deadline).await;
    }
    // Sinks first, so the connector knows where to send before Prepares arrive.
    let ids = (0..spec.sinks).map(|i| (spec.index * 64 + 32 + i) as u64);
    let sinks = opener
        .dial_many(Role::Sink, ids, &cli.sink, &cli.target, "sink connection")
        .await?;
    let mut all = wait_open(sinks, deadline).await?;
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
    all.extend(wait_open(senders, deadline).await?);
    Ok(all)
}

/// `--transport http`: the sink listens (every thread on `--sink-listen`, or with `--direct`
/// and no `--sink-listen` on a free port of its own), then the senders dial the connector's
/// URL, or the sink with `--direct`.
pub(crate) async fn connect_all_http(
    spec: &ThreadSpec,
    common: &Common,
    opener: &Opener,
    http_sinks: &Rc<RefCell<Vec<http::SinkShared>>>,
) -> Result<Vec<Link>, String> {
    let cli = &common.cli;
    let mut sink_port = None;
    if spec.sinks > 0 {
        let address = cli
            .sink_listen
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = glommio::net::TcpListener::bind(address)
            .map_err(|e| format!("--sink-listen {address}: {e}"))?;
        sink_port = Some(listener.local_addr().map_err(|e| e.to_string())?.port());
        // With --direct the sink stands in for the connector, so it takes the sender's token.
        let token = if cli.direct {
            &cli.sender.1
        } else {
            &cli.sink.1
        };
        glommio::spawn_local(http::serve(
            listener,
            Rc::clone(&opener.plan),
            Rc::clone(&opener.ring),
            Rc::clone(&opener.stats),
            Rc::from(token.as_bytes()),
            Rc::clone(http_sinks),
        ))
        .detach();
    }
    let target = match (&cli.http_target, sink_port) {
        (Some(target), _) => target.clone(),
        (None, Some(port)) if cli.direct => BtpUrl {
            host: "127.0.0.1".into(),
            port,
            path: "/".into(),
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
        )
        .await
        .map_err(|e| format!("sender connection to {}: {e}", target.host_port()))?;
        senders.push(Link::HttpSender(sender));
    }
    Ok(senders)
}

impl Opener {
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
            let c = conn::dial(
                Rc::clone(&self.plan),
                Rc::clone(&self.ring),
                Rc::clone(&self.stats),
                setup,
                target,
            )
            .await
            .map_err(|e| format!("{what} to {}: {e}", target.host_port()))?;
            conns.push(c);
        }
        Ok(conns)
    }
}

/// Waits until every connection has finished BTP auth or closed: an error if time ran out or
/// the connector refused one.
pub(crate) async fn wait_open(conns: Vec<Conn>, deadline: Instant) -> Result<Vec<Conn>, String> {
    let ok = conn::wait_until(deadline, || {
        conns
            .iter()
            .all(|c| c.borrow().opened || c.borrow().closing)
    })
    .await;
    if !ok {
        return Err("a connection did not authenticate within 10 s".into());
    }
    if conns.iter().any(|c| !c.borrow().opened) {
        return Err(
            "the connector refused our BTP auth (check --sender/--sink credentials)".into(),
        );
    }
    Ok(conns)
}
