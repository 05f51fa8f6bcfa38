//! `--direct` over BTP: the sender connects straight to the sink, with no connector between, to
//! measure the harness's own ceiling. The sink listens on a free loopback port of this thread and
//! accepts the senders as a connector would (checking the sender's token); the senders dial it.
//! With `--sink-cert` the sink serves TLS and the senders dial it over TLS (`wss://127.0.0.1:port`,
//! the run's client config). (`--direct` over HTTP needs no such stand-in: the HTTP sink already
//! listens, see `connect::connect_all_http`.)

use crate::cli::CliShared;
use crate::conn::{self, Role, Setup, Shared as Conn};
use crate::connect::{wait_open, Opener};
use crate::sinks::SinkId;
use crate::tls;
use crate::worker::ThreadSpec;
use ilp_router::id::PeerId;
use ilp_router::link::auth::PeerAuth;
use ilp_router::link::url::BtpUrl;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

/// This thread's senders and the sink connections they opened, all authenticated by
/// `deadline`.
pub(crate) async fn connect(
    spec: &ThreadSpec,
    cli: &CliShared,
    opener: &Opener,
    deadline: Instant,
) -> Result<Vec<Conn>, String> {
    let mut conns = Vec::new();
    // The sink listens here; our senders dial it instead of a connector.
    let listener = glommio::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("direct listener: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let auth = Rc::new(PeerAuth::new(&[(
        PeerId(0),
        cli.sender.0.as_str(),
        std::slice::from_ref(&cli.sender.1),
    )]));
    let accepted: Rc<RefCell<Vec<Conn>>> = Rc::new(RefCell::new(Vec::new()));
    let sinks = spec.sinks;
    {
        let (plan, ring, stats, accepted) = (
            Rc::clone(&opener.plan),
            Rc::clone(&opener.ring),
            Rc::clone(&opener.stats),
            Rc::clone(&accepted),
        );
        let listen_tls = cli.listen_tls.clone();
        glommio::spawn_local(async move {
            for i in 0..sinks {
                let Ok(tcp) = listener.accept().await else {
                    return;
                };
                // A failed handshake is the sender's failure to report.
                let Ok(stream) = tls::accept(tcp, listen_tls.as_ref()).await else {
                    continue;
                };
                let setup = Setup {
                    role: Role::Sink(SinkId::new(0)),
                    id: (spec_id_sink(i)) as u64,
                    username: String::new(),
                    token: String::new(),
                };
                if let Ok(c) = conn::accept(
                    Rc::clone(&plan),
                    Rc::clone(&ring),
                    Rc::clone(&stats),
                    setup,
                    stream,
                    Rc::clone(&auth),
                )
                .await
                {
                    accepted.borrow_mut().push(c);
                }
            }
        })
        .detach();
    }
    let ids = (0..spec.senders).map(|i| (spec.index * 64 + i) as u64);
    // `--relay-cpu`: the senders dial the relay, which dials the sink for each.
    let port = match cli.relay_cpu {
        Some(cpu) => crate::relay::start(cpu, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .map_err(|e| format!("--relay-cpu {cpu}: the relay: {e}"))?
            .addr
            .port(),
        None => port,
    };
    let target = BtpUrl {
        host: "127.0.0.1".into(),
        port,
        path: "/".into(),
        tls: cli.listen_tls.is_some(),
    };
    conns.extend(
        opener
            .dial_many(Role::Sender, ids, &cli.sender, &target, "direct sender")
            .await?,
    );
    let ok = conn::wait_until(deadline, || {
        accepted.borrow().len() == sinks && accepted.borrow().iter().all(|c| c.borrow().opened)
    })
    .await;
    if !ok {
        return Err("direct: the sink did not accept the sender".into());
    }
    conns.extend(accepted.borrow().iter().cloned());
    wait_open(conns, deadline, "the direct sender").await
}

fn spec_id_sink(i: usize) -> usize {
    1000 + i
}
