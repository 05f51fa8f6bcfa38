//! The router's admin endpoints: what the generic server (`server.rs`) calls for each
//! request. Everything here reads what the cores publish (their reports, on request, see
//! `shard/report.rs`) or sets a flag they follow at their next tick (drains); nothing waits on
//! a core for longer than the report deadline, and nothing here runs on a packet core.
//!
//! | method, path | answer |
//! | --- | --- |
//! | `GET /metrics` | Prometheus text: per peer traffic, balances, in flight, links, round trips; per core CPU; drops, bad frames, auth failures; process |
//! | `GET /health` | 200 `{"status":"ok"}` while the process serves requests (liveness) |
//! | `GET /ready` | 200 when every core answered a report request in time, else 503 |
//! | `GET /peers` | per peer: relation, asset, links per core, balance posted and held, in flight, health, drain |
//! | `GET /routes` | every route: prefix, peer or group, source (`config` or `implicit`) |
//! | `GET /routes/explain?destination=…` | the route that matches and why; for a group, what each core would pick now |
//! | `GET /config` | the running config, secrets redacted |
//! | `POST /peers/{name}/drain`, `/undrain` | drain a peer (no new Prepares from or to it; its links close once idle), or end that |
//! | `POST /reload` | read the config file again and apply it (see `shard/reload.rs`), or say why not |
//! | `POST /peers/{name}/settlements` | `{"amount","direction","idempotency_key"}`: a settlement made outside the router, applied once per key (`crate::settlements`) |
//! | `GET /cluster` | with `[cluster_state]`: per shared peer, this router's ceiling (held by its core and granted in etcd), use, and every router's entry in etcd; the agent's counters |
//! | `POST /cluster/release` | `{"peer","box","reason"}`: release what a router that is gone held for a peer in etcd (its ceiling comes down to its last published posted balance); logged with the reason |
//!
//! Metrics are labelled only with peer names from the config, directions, reject codes from
//! a fixed list and core numbers: never with an ILP address.
//!
//! Over 800 lines: it is the one file that maps the router's state to the admin endpoints and
//! the metrics (the rule that only it imports `shard` and `config` keeps them together); the
//! shared limits' endpoints are its part `api_cluster.rs`.

use super::prometheus::{Counts, Exposition, Kind, Value as Value64};
use super::{AdminCounters, Request, Response};
use crate::config::Config;
use crate::engine::group::{Backend, Group, Policy};
use crate::engine::route::Hop;
use crate::engine::stats::{
    PeerStats, CODES, CODE_OTHER, INCOMING, OUTGOING, ROUND_TRIP_BOUNDS_MS,
};
use crate::engine::PeerId;
use crate::settlements::{Direction, Journal, Recorded, Refused, Settlement, KEY_LEN_MAX};
use crate::shard::report::CoreReport;
use crate::shard::Shared;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

#[path = "api_cluster.rs"]
mod cluster;

/// How long a request waits for the cores' reports.
const REPORT_DEADLINE: Duration = Duration::from_millis(500);

/// The router's admin handler.
#[derive(Debug)]
pub(crate) struct RouterAdmin {
    config: Arc<Config>,
    shared: Arc<Shared>,
    counters: Arc<AdminCounters>,
    /// The settlements recorded (one request at a time writes it).
    journal: Mutex<Journal>,
}

/// The per-peer sums over cores.
#[derive(Debug, Default, Clone)]
struct PeerTotals {
    stats: PeerStats,
    posted: i128,
    held: i128,
    in_flight_in: u64,
    in_flight_out: u64,
    links: Vec<u64>,
    link_up: bool,
    ejected_on: Vec<usize>,
    draining: bool,
}

impl RouterAdmin {
    pub(crate) fn new(
        config: Arc<Config>,
        shared: Arc<Shared>,
        counters: Arc<AdminCounters>,
        journal: Journal,
    ) -> RouterAdmin {
        RouterAdmin {
            config,
            shared,
            counters,
            journal: Mutex::new(journal),
        }
    }

    /// The running config (a reload may have replaced the one the router started with).
    fn current(&self) -> Arc<Config> {
        self.shared
            .config
            .current()
            .unwrap_or_else(|| Arc::clone(&self.config))
    }

    /// `POST /reload`: 200 with what changed, or 400 with why nothing did.
    fn reload(&self) -> Response {
        match self.shared.config.reload(&self.shared.draining) {
            Ok(changes) => {
                let changes: Vec<&str> = changes.iter().map(|c| c.what.as_str()).collect();
                Response::json(200, json!({"reloaded": true, "changes": changes}))
            }
            Err(e) => Response::json(400, json!({"reloaded": false, "error": e})),
        }
    }

    /// Answers one request.
    pub(crate) fn handle(&self, request: &Request) -> Response {
        let path = request.path.trim_end_matches('/');
        let method = request.method.as_str();
        match (method, path) {
            ("GET", "/metrics") => Response::metrics(self.metrics()),
            ("GET", "/health") => Response::json(200, json!({"status": "ok"})),
            ("GET", "/ready") => self.ready(),
            ("GET", "/peers") => self.peers(),
            ("GET", "/routes") => self.routes(),
            ("GET", "/routes/explain") => self.explain(request),
            ("GET", "/config") => Response::json(200, self.config_json()),
            ("POST", "/reload") => self.reload(),
            ("GET", "/cluster") => self.cluster(),
            ("POST", "/cluster/release") => self.release(request),
            ("POST", p) if p.starts_with("/peers/") => self.peer_action(p, request),
            (
                _,
                "/metrics" | "/health" | "/ready" | "/peers" | "/routes" | "/routes/explain"
                | "/config" | "/reload" | "/cluster" | "/cluster/release",
            ) => Response::error(405, &format!("{method} is not allowed on {path}")),
            _ => Response::error(404, &format!("no endpoint {path}")),
        }
    }

    /// Every core's report (those that did not answer in time are left out, and counted).
    fn reports(&self) -> (Vec<Arc<CoreReport>>, usize) {
        let all = self.shared.reports.collect(REPORT_DEADLINE);
        let wanted = self.shared.reports.requested();
        let missing = all
            .iter()
            .filter(|r| r.as_ref().is_none_or(|r| r.request < wanted))
            .count();
        (all.into_iter().flatten().collect(), missing)
    }

    fn totals(&self, reports: &[Arc<CoreReport>]) -> Vec<PeerTotals> {
        let cores = self.shared.cores;
        let config = self.current();
        let mut totals = vec![
            PeerTotals {
                links: vec![0; cores],
                ..PeerTotals::default()
            };
            config.peers().len()
        ];
        for report in reports {
            for (total, peer) in totals.iter_mut().zip(&report.peers) {
                total.stats.add(&peer.stats);
                total.posted += peer.posted;
                total.held += peer.held;
                total.in_flight_in += peer.in_flight_in;
                total.in_flight_out += peer.in_flight_out;
                total.links[report.core] = peer.links;
                total.link_up |= peer.link_up;
                if peer.ejected {
                    total.ejected_on.push(report.core);
                }
            }
        }
        let journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        for (i, total) in totals.iter_mut().enumerate() {
            total.draining = self.shared.draining[i].load(Ordering::Relaxed);
            // Settlements live in the journal, not in the cores' rows; and a peer a reload
            // added under the name of one the state held has that old row too.
            let name = &config.peers()[i].name;
            total.posted += journal.sum(name) + self.shared.config.carried_rows(name);
        }
        totals
    }

    fn ready(&self) -> Response {
        let (reports, missing) = self.reports();
        let body = json!({
            "ready": missing == 0,
            "cores": self.shared.cores,
            "answered": reports.len(),
        });
        Response::json(if missing == 0 { 200 } else { 503 }, body)
    }

    fn metrics(&self) -> String {
        let (reports, missing) = self.reports();
        let totals = self.totals(&reports);
        let mut out = String::with_capacity(16 * 1024);
        let mut w = Exposition::new(&mut out);
        let config = self.current();
        let names: Vec<&str> = config.peers().iter().map(|p| p.name.as_str()).collect();
        let dirs = [(INCOMING, "incoming"), (OUTGOING, "outgoing")];
        // One sample per peer, or per peer and direction, from its totals.
        let per_peer = |w: &mut Exposition<'_>,
                        family: (&str, &str, Kind),
                        f: &dyn Fn(&PeerTotals) -> Value64| {
            w.family(family.0, family.1, family.2);
            for (name, t) in names.iter().zip(&totals) {
                w.sample(&[("peer", name)], f(t));
            }
        };
        let per_dir = |w: &mut Exposition<'_>,
                       family: (&str, &str, Kind),
                       f: &dyn Fn(&PeerTotals, usize) -> Value64| {
            w.family(family.0, family.1, family.2);
            for (name, t) in names.iter().zip(&totals) {
                for (d, dir) in dirs {
                    w.sample(&[("peer", name), ("direction", dir)], f(t, d));
                }
            }
        };
        per_dir(
            &mut w,
            (
                "ilp_prepares_total",
                "Prepares from the peer (incoming) and forwarded to it (outgoing).",
                Kind::Counter,
            ),
            &|t, d| t.stats.prepares[d].into(),
        );
        per_dir(
            &mut w,
            (
                "ilp_fulfills_total",
                "Fulfills relayed to the peer (incoming) and received from it (outgoing).",
                Kind::Counter,
            ),
            &|t, d| t.stats.fulfills[d].into(),
        );
        w.family("ilp_rejects_total", "Rejects sent to the peer (incoming: ours and relayed) and received from it (outgoing), by ILP code.", Kind::Counter);
        for (name, t) in names.iter().zip(&totals) {
            for (d, dir) in dirs {
                for (i, &count) in t.stats.rejects[d].iter().enumerate() {
                    if count == 0 {
                        continue;
                    }
                    let code = if i == CODE_OTHER {
                        "other"
                    } else {
                        CODES[i].as_str()
                    };
                    w.sample(&[("peer", name), ("direction", dir), ("code", code)], count);
                }
            }
        }
        per_dir(
            &mut w,
            ("ilp_amount_total", "Amounts of fulfilled Prepares, in the peer's units (incoming: from it; outgoing: to it).", Kind::Counter),
            &|t, d| exact_u(t.stats.amount[d]),
        );
        per_peer(
            &mut w,
            (
                "ilp_balance",
                "Posted balance, in the peer's units (positive: the peer owes us).",
                Kind::Gauge,
            ),
            &|t| exact_i(t.posted),
        );
        per_peer(
            &mut w,
            (
                "ilp_balance_held",
                "Held against the peer's balance by its Prepares in flight.",
                Kind::Gauge,
            ),
            &|t| exact_i(t.held),
        );
        per_dir(
            &mut w,
            (
                "ilp_in_flight",
                "Prepares in flight from the peer (incoming) and to it (outgoing).",
                Kind::Gauge,
            ),
            &|t, d| {
                if d == INCOMING {
                    t.in_flight_in
                } else {
                    t.in_flight_out
                }
                .into()
            },
        );
        per_peer(
            &mut w,
            ("ilp_link_up", "1 when the router can send the peer Prepares (a link on some core, or an HTTP peer that can be reached).", Kind::Gauge),
            &|t| u64::from(t.link_up).into(),
        );
        per_peer(
            &mut w,
            (
                "ilp_links",
                "The peer's open links, all cores.",
                Kind::Gauge,
            ),
            &|t| t.links.iter().sum::<u64>().into(),
        );
        per_peer(
            &mut w,
            (
                "ilp_draining",
                "1 while the peer is drained by the operator.",
                Kind::Gauge,
            ),
            &|t| u64::from(t.draining).into(),
        );
        let current = self.current();
        w.family(
            "ilp_backend_ejected",
            "Cores on which the backend is ejected from its group.",
            Kind::Gauge,
        );
        for (i, (name, t)) in names.iter().zip(&totals).enumerate() {
            let peer = PeerId(i as u16);
            if current.groups().iter().any(|g| g.peers.contains(&peer)) {
                w.sample(&[("peer", name)], t.ejected_on.len());
            }
        }
        let bounds: Vec<f64> = ROUND_TRIP_BOUNDS_MS
            .iter()
            .map(|&ms| ms as f64 / 1000.0)
            .collect();
        w.family(
            "ilp_round_trip_seconds",
            "Time from forwarding a Prepare to the peer to its answer (1 ms resolution).",
            Kind::Histogram,
        );
        for (name, t) in names.iter().zip(&totals) {
            let sum = t.stats.round_trip_sum_ms as f64 / 1000.0;
            w.histogram(
                &[("peer", name)],
                &bounds,
                Counts::PerBucket(&t.stats.round_trip),
                sum,
            );
        }

        w.family(
            "ilp_core_busy_seconds_total",
            "CPU time of each core's thread (spinning included).",
            Kind::Counter,
        );
        for report in &reports {
            if let Some(seconds) = thread_cpu_seconds(report.tid) {
                w.sample(&[("core", &report.core.to_string())], seconds);
            }
        }
        w.family(
            "ilp_core_spin_idle_seconds_total",
            "Part of each core's CPU time spent spinning with nothing to forward.",
            Kind::Counter,
        );
        for report in &reports {
            let seconds = report.runtime.spin_idle_ns as f64 / 1e9;
            w.sample(&[("core", &report.core.to_string())], seconds);
        }
        w.gauge(
            "ilp_cores_not_reporting",
            "Cores that did not answer the last report request in time.",
            missing,
        );
        let sum = |f: &dyn Fn(&CoreReport) -> u64| reports.iter().map(|r| f(r)).sum::<u64>();
        w.counter(
            "ilp_ring_deferred_total",
            "Messages to another core that waited for room in its ring.",
            sum(&|r| r.runtime.cross_core_deferred),
        );
        w.gauge(
            "ilp_ring_backlog",
            "Messages for other cores waiting for room in their rings.",
            sum(&|r| r.mesh_backlog),
        );
        w.counter(
            "ilp_ring_dropped_total",
            "Messages to another core dropped because that core had stopped.",
            sum(&|r| r.runtime.cross_core_dropped),
        );
        w.counter(
            "ilp_link_queue_overflows_total",
            "Links closed because their output queue went over link_queue_bytes_max.",
            sum(&|r| r.links.queue_overflows),
        );
        w.counter(
            "ilp_reads_paused_total",
            "Times a link's reader paused because its queue was over half the cap.",
            sum(&|r| r.runtime.reads_paused),
        );
        w.counter(
            "ilp_bad_frames_total",
            "BTP messages that were not readable.",
            sum(&|r| r.btp.unreadable),
        );
        w.family(
            "ilp_auth_failures_total",
            "Failed authentications, by transport.",
            Kind::Counter,
        );
        w.sample(&[("transport", "btp")], sum(&|r| r.btp.auth_failures));
        w.sample(
            &[("transport", "http")],
            sum(&|r| r.runtime.http_auth_failures),
        );
        w.family(
            "ilp_tls_handshakes_total",
            "TLS handshakes on our listeners, by result (a refused client certificate's reason is logged).",
            Kind::Counter,
        );
        w.sample(&[("result", "ok")], sum(&|r| r.runtime.tls_handshakes));
        w.sample(
            &[("result", "failed")],
            sum(&|r| r.runtime.tls_handshake_failures),
        );
        w.sample(
            &[("result", "cert_refused")],
            sum(&|r| r.runtime.tls_cert_refusals),
        );
        w.counter(
            "ilp_tls_dial_failures_total",
            "TLS handshakes of connections we dialled that failed.",
            sum(&|r| r.runtime.tls_dial_failures),
        );
        w.counter(
            "ilp_http_refused_total",
            "ILP-over-HTTP requests answered with an HTTP error.",
            sum(&|r| r.runtime.http_refused),
        );
        w.counter(
            "ilp_links_refused_total",
            "Connections refused at a links_max or unauthenticated_max cap.",
            sum(&|r| r.runtime.links_refused + r.runtime.unauthenticated_refused),
        );
        w.counter(
            "ilp_write_timeouts_total",
            "Links closed because writes made no progress for write_timeout_ms.",
            sum(&|r| r.runtime.write_timeouts),
        );
        w.counter(
            "ilp_expired_total",
            "Prepares answered R00 because the next hop did not answer by the expiry.",
            sum(&|r| r.engine.expired),
        );
        w.counter(
            "ilp_late_replies_total",
            "Replies that came after their Prepare was resolved (never credited).",
            sum(&|r| r.engine.late_replies),
        );
        w.counter(
            "ilp_wrong_fulfillments_total",
            "Fulfills whose hash did not match (answered F05).",
            sum(&|r| r.engine.wrong_fulfillments),
        );
        w.counter(
            "ilp_backend_ejections_total",
            "Backends ejected from their group (all cores).",
            sum(&|r| r.health.ejections),
        );
        w.counter(
            "ilp_backend_failovers_total",
            "Prepares sent to a backend other than the group's first choice.",
            sum(&|r| r.health.failovers + r.health.rerouted),
        );
        w.family(
            "ilp_reloads_total",
            "Configuration reloads, applied or refused (the running config then stays).",
            Kind::Counter,
        );
        w.sample(
            &[("result", "applied")],
            self.shared.config.reloads.load(Ordering::Relaxed),
        );
        w.sample(
            &[("result", "refused")],
            self.shared.config.refused.load(Ordering::Relaxed),
        );
        let (learned, ccp) = {
            let view = self
                .shared
                .control
                .view
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            (view.learned.len() as u64, view.counters)
        };
        w.family(
            "ilp_ccp_requests_total",
            "Route exchange (CCP) requests from peers: fulfilled, refused (F00), or answered T03 \
             because the route speaker was busy.",
            Kind::Counter,
        );
        w.sample(&[("result", "accepted")], ccp.accepted);
        w.sample(&[("result", "refused")], ccp.refused);
        w.sample(
            &[("result", "busy")],
            self.shared.control.refused_busy.load(Ordering::Relaxed),
        );
        w.family(
            "ilp_ccp_updates_sent_total",
            "Route updates we sent to peers.",
            Kind::Counter,
        );
        w.sample(&[], ccp.updates_sent);
        w.family(
            "ilp_ccp_routes_dropped_total",
            "Learned routes dropped: by the import filters or a per-peer limit, or expired.",
            Kind::Counter,
        );
        w.sample(&[("reason", "filtered")], ccp.routes_filtered);
        w.sample(&[("reason", "expired")], ccp.routes_expired);
        w.family(
            "ilp_routes_learned",
            "Routes learned from peers by CCP, all peers together.",
            Kind::Gauge,
        );
        w.sample(&[], learned);
        self.cluster_metrics(&mut w);
        self.counters.write(&mut w);
        super::write_process_metrics(&mut w);
        out
    }

    fn peers(&self) -> Response {
        let (reports, missing) = self.reports();
        let totals = self.totals(&reports);
        let current = self.current();
        let peers: Vec<Value> = current
            .peers()
            .iter()
            .zip(&totals)
            .map(|(p, t)| {
                let group = current
                    .groups()
                    .iter()
                    .find(|g| g.peers.contains(&p.id))
                    .map(|g| g.name.clone());
                json!({
                    "name": p.name,
                    "removed": p.removed,
                    "relation": p.relation.as_str(),
                    "asset_code": p.asset_code,
                    "asset_scale": p.asset_scale,
                    "max_balance": p.max_balance.to_string(),
                    "posted": t.posted.to_string(),
                    "held": t.held.to_string(),
                    "in_flight": {"incoming": t.in_flight_in, "outgoing": t.in_flight_out},
                    "links_per_core": t.links,
                    "link_up": t.link_up,
                    "group": group,
                    "ejected_on_cores": t.ejected_on,
                    "draining": t.draining,
                    "prepares": {"incoming": t.stats.prepares[INCOMING], "outgoing": t.stats.prepares[OUTGOING]},
                    "fulfills": {"incoming": t.stats.fulfills[INCOMING], "outgoing": t.stats.fulfills[OUTGOING]},
                })
            })
            .collect();
        Response::json(200, json!({"peers": peers, "cores_not_reporting": missing}))
    }

    fn hop_json(&self, hop: Hop) -> Value {
        let config = self.current();
        match hop {
            Hop::Peer(peer) => json!({"peer": config.peer(peer).name}),
            Hop::Group(group) => json!({"group": config.groups()[group.index()].name}),
        }
    }

    fn routes(&self) -> Response {
        let config = self.current();
        let mut routes: Vec<Value> = config
            .routes()
            .iter()
            .map(|r| {
                let mut entry = json!({
                    "prefix": r.prefix,
                    "source": if r.implicit { "implicit" } else { "config" },
                });
                merge(&mut entry, self.hop_json(r.hop));
                entry
            })
            .collect();
        if let Some(peer) = config.default_route() {
            routes.push(json!({
                "prefix": "(default)",
                "peer": config.peer(peer).name,
                "source": "default_route",
            }));
        }
        // Learned by CCP: every route each peer told us, and whether the table uses it (a
        // configured route for the same prefix wins).
        let view = self
            .shared
            .control
            .view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for learned in &view.learned {
            let configured = config.routes().iter().any(|r| r.prefix == learned.prefix);
            routes.push(json!({
                "prefix": learned.prefix,
                "peer": config.peers().get(learned.peer.index()).map(|p| p.name.clone()),
                "source": "learned",
                "path": learned.path,
                "epoch": learned.epoch,
                "used": learned.best && !configured,
            }));
        }
        let control = json!({
            "routing_table_id": view.table_id,
            "epoch": view.epoch,
            "learned": view.learned.len(),
        });
        Response::json(200, json!({"routes": routes, "route_exchange": control}))
    }

    fn explain(&self, request: &Request) -> Response {
        let Some(destination) = request.param("destination") else {
            return Response::error(400, "give ?destination=<ILP address>");
        };
        if crate::wire::check_address(destination.as_bytes()).is_err() {
            return Response::error(400, &format!("{destination:?} is not a valid ILP address"));
        }
        let Some((config, table)) = self.shared.config.published() else {
            return Response::error(503, "the router has not started");
        };
        let Some(matched) = table.lookup_match(destination.as_bytes()) else {
            return Response::json(
                200,
                json!({
                    "destination": destination,
                    "route": null,
                    "why": "no route matches on a segment boundary and the default route does not \
                            apply (it serves only our own scheme); answered F02",
                }),
            );
        };
        let prefix = &destination[..matched.prefix_len];
        let why = if matched.prefix_len == 0 {
            "no route matches; the default route applies to destinations in our scheme".to_owned()
        } else {
            format!("the longest prefix that matches on a segment boundary is {prefix:?}")
        };
        let source = match config.routes().iter().find(|r| r.prefix == prefix) {
            Some(r) if r.implicit => "implicit",
            Some(_) => "config",
            None if matched.prefix_len == 0 => "default_route",
            None => "learned",
        };
        let mut answer =
            json!({"destination": destination, "prefix": prefix, "why": why, "source": source});
        merge(&mut answer, self.hop_json(matched.hop));
        if let Hop::Group(g) = matched.hop {
            let group = &config.groups()[g.index()];
            let (reports, _) = self.reports();
            let picks: Vec<Value> = reports
                .iter()
                .map(|report| {
                    let pick = self.pick(group, report, destination, matched.prefix_len);
                    json!({"core": report.core, "backend": pick.map(|p| config.peer(p).name.clone())})
                })
                .collect();
            answer["picks"] = Value::Array(picks);
            answer["policy"] = json!(match group.policy {
                Policy::Hash { hash_segments } => format!("hash (hash_segments = {hash_segments})"),
                Policy::LeastInFlight => "least_in_flight".to_owned(),
            });
        }
        Response::json(200, answer)
    }

    /// What `group` would choose on `report`'s core now (its backends' state as reported).
    fn pick(
        &self,
        group: &crate::config::Group,
        report: &CoreReport,
        destination: &str,
        prefix_len: usize,
    ) -> Option<PeerId> {
        let backends = group
            .peers
            .iter()
            .zip(&group.weights)
            .map(|(&peer, &weight)| Backend {
                peer,
                name: self.current().peer(peer).name.clone(),
                weight,
            })
            .collect();
        let mut table = Group::new(backends, group.policy);
        for &peer in &group.peers {
            // A core that has not yet applied a reload has no report of a peer it added.
            let up = report
                .peers
                .get(peer.index())
                .is_some_and(|p| p.link_up && !p.ejected && !p.draining);
            table.set_up(peer, up);
        }
        let in_flight = |peer: PeerId| {
            report
                .peers
                .get(peer.index())
                .map_or(0, |p| p.in_flight_out as usize)
        };
        table.select(
            destination.as_bytes(),
            prefix_len,
            in_flight,
            |_| false,
            None,
        )
    }

    fn config_json(&self) -> Value {
        let config = self.current();
        let c = &config;
        let peers: Vec<Value> = c
            .peers()
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "address": p.address,
                    "relation": p.relation.as_str(),
                    "asset_code": p.asset_code,
                    "asset_scale": p.asset_scale,
                    "max_balance": p.max_balance.to_string(),
                    "max_packet_amount": p.max_packet_amount.to_string(),
                    "auth_tokens": vec!["(redacted)"; p.auth_tokens.len()],
                    "btp_url": p.dial().map(|d| d.url.to_string()),
                    "http_url": p.http().map(|d| d.url.to_string()),
                    "outgoing_token": (p.dial().is_some() || p.http().is_some()).then_some("(redacted)"),
                })
            })
            .collect();
        let groups: Vec<Value> = c
            .groups()
            .iter()
            .map(|g| {
                json!({
                    "name": g.name,
                    "peers": g.peers.iter().map(|&p| c.peer(p).name.clone()).collect::<Vec<_>>(),
                    "weights": g.weights,
                    "policy": match g.policy {
                        Policy::Hash { .. } => "hash",
                        Policy::LeastInFlight => "least_in_flight",
                    },
                    "hash_segments": match g.policy {
                        Policy::Hash { hash_segments } => Some(hash_segments),
                        Policy::LeastInFlight => None,
                    },
                    "backend_in_flight_max": g.backend_in_flight_max,
                    "outlier_window": g.outlier.window,
                    "outlier_failure_percent": g.outlier.failure_percent,
                    "ejection_base_ms": g.outlier.ejection_base_ms,
                    "ejection_max_ms": g.outlier.ejection_max_ms,
                    "max_ejection_percent": g.outlier.max_ejection_percent,
                })
            })
            .collect();
        let rates: serde_json::Map<String, Value> = c
            .rates()
            .iter()
            .map(|(code, price)| (code.clone(), json!(price.to_string())))
            .collect();
        json!({
            "ilp_address": c.ilp_address(),
            "spread": c.spread().to_string(),
            "min_message_window_ms": c.min_message_window_ms(),
            "max_hold_time_ms": c.max_hold_time_ms(),
            "listen": {
                "btp": c.listen_btp().map(|a| a.to_string()),
                "http": c.listen_http().map(|a| a.to_string()),
            },
            "peers": peers,
            "groups": groups,
            "routes": self.routes_only(),
            "rates": rates,
            "limits": format!("{:?}", c.limits()),
            "state": {
                "dir": c.state().dir.as_ref().map(|d| d.display().to_string()),
                "msync_interval_ms": c.state().msync_interval_ms,
            },
            "admin": c.admin().map(|a| json!({
                "listen": a.listen.to_string(),
                "token": a.token.as_ref().map(|_| "(redacted)"),
                "metrics_token": a.metrics_token,
            })),
        })
    }

    fn routes_only(&self) -> Vec<Value> {
        let config = self.current();
        config
            .routes()
            .iter()
            .filter(|r| !r.implicit)
            .map(|r| {
                let mut entry = json!({"prefix": r.prefix});
                merge(&mut entry, self.hop_json(r.hop));
                entry
            })
            .collect()
    }

    /// `POST /peers/{name}/drain`, `/undrain` and `/settlements`.
    fn peer_action(&self, path: &str, request: &Request) -> Response {
        let rest = &path["/peers/".len()..];
        let Some((name, action)) = rest.split_once('/') else {
            return Response::error(404, &format!("no endpoint {path}"));
        };
        let Some(peer) = self.current().peer_id(name) else {
            return Response::error(404, &format!("no peer is named {name:?}"));
        };
        let drain = match action {
            "drain" => true,
            "undrain" => false,
            "settlements" => return self.settle(peer, name, &request.body),
            _ => return Response::error(404, &format!("no endpoint {path}")),
        };
        let was = self.shared.draining[peer.index()].swap(drain, Ordering::Relaxed);
        tracing::info!(peer = %name, "admin: {action}");
        Response::json(
            200,
            json!({"peer": name, "draining": drain, "changed": was != drain}),
        )
    }
}

impl RouterAdmin {
    /// `POST /peers/{name}/settlements`: journal it (durable first), then hand its delta to
    /// the peer's home core, which applies it at its next tick.
    fn settle(&self, peer: PeerId, name: &str, body: &[u8]) -> Response {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            amount: String,
            direction: Direction,
            idempotency_key: String,
        }
        let body: Body = match serde_json::from_slice(body) {
            Ok(body) => body,
            Err(e) => {
                return Response::error(
                    400,
                    &format!(
                        "expected {{\"amount\": \"<units>\", \"direction\": \"incoming|outgoing\", \
                         \"idempotency_key\": \"…\"}}: {e}"
                    ),
                )
            }
        };
        if body.idempotency_key.is_empty() || body.idempotency_key.len() > KEY_LEN_MAX {
            return Response::error(400, &format!("idempotency_key: 1 to {KEY_LEN_MAX} bytes"));
        }
        let settlement = Settlement {
            key: body.idempotency_key,
            peer: name.to_owned(),
            amount: body.amount,
            direction: body.direction,
        };
        let delta = match settlement.delta() {
            Ok(delta) => delta,
            Err(e) => return Response::error(400, &e),
        };
        let mut journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        match journal.record(settlement) {
            Ok(Recorded::New) => {
                let home = self.current().home_core(peer, self.shared.cores);
                let mut queue = self.shared.settlements[usize::from(home.0)]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                queue.push((peer, delta));
                drop(queue);
                tracing::info!(peer = %name, delta = %delta, "admin: settlement recorded");
                Response::json(
                    201,
                    json!({"peer": name, "applied": true, "delta": delta.to_string()}),
                )
            }
            Ok(Recorded::Duplicate) => Response::json(
                200,
                json!({"peer": name, "applied": false, "duplicate": true}),
            ),
            Err(Refused::Conflict) => Response::error(
                409,
                "this idempotency_key was used for a different settlement",
            ),
            Err(Refused::Full) => {
                Response::error(507, "the settlement journal holds its most keys")
            }
            Err(Refused::Io(e)) => {
                tracing::error!("settlement journal: {e}");
                Response::error(
                    500,
                    &format!("the settlement journal could not be written: {e}"),
                )
            }
        }
    }
}

/// Copies the fields of `more` (an object) into `into` (an object).
fn merge(into: &mut Value, more: Value) {
    if let (Some(into), Value::Object(more)) = (into.as_object_mut(), more) {
        into.extend(more);
    }
}

/// An amount, exact while it fits 64 bits (then as a float, as Prometheus stores it anyway).
fn exact_u(n: u128) -> Value64 {
    u64::try_from(n).map_or(Value64::F64(n as f64), Value64::U64)
}

/// A balance, exact while it fits 64 bits.
fn exact_i(n: i128) -> Value64 {
    i64::try_from(n).map_or(Value64::F64(n as f64), Value64::I64)
}

/// A thread's CPU time from `/proc/self/task/<tid>/schedstat` (its first field, ns).
fn thread_cpu_seconds(tid: i32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}
