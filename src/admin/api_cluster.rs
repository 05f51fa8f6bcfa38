//! The admin endpoints of limits shared with other routers (`[cluster_state]`): `GET
//! /cluster`, `POST /cluster/release` and the `ilp_cluster_*` metrics. A part of `api.rs`
//! (the same `RouterAdmin`), kept apart so each file stays one concern.

use super::{exact_i, RouterAdmin};
use crate::admin::prometheus::{Exposition, Kind};
use crate::admin::{Request, Response};
use crate::cluster::agent::PeerView;
use crate::cluster::etcd::EtcdClient;
use crate::cluster::EtcdStore;
use serde_json::{json, Value};
use std::time::Duration;

impl RouterAdmin {
    /// The shared limits' metrics, with `[cluster_state]`.
    pub(super) fn cluster_metrics(&self, w: &mut Exposition<'_>) {
        if self.current().cluster_state().is_none() {
            return;
        }
        let view = self
            .shared
            .cluster
            .view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let c = view.counters;
        w.family(
            "ilp_cluster_store_txns_total",
            "Compare-and-put transactions on the shared store (etcd): written, or lost to \
             another router and retried.",
            Kind::Counter,
        );
        w.sample(&[("result", "ok")], c.txn_ok);
        w.sample(&[("result", "conflict")], c.txn_conflict);
        w.family(
            "ilp_cluster_store_errors_total",
            "Shared store calls that failed (no member answered in time, or an error).",
            Kind::Counter,
        );
        w.sample(&[], c.store_errors);
        w.family(
            "ilp_cluster_store_requests_total",
            "HTTP requests made to the shared store.",
            Kind::Counter,
        );
        w.sample(&[], view.requests);
        w.family(
            "ilp_cluster_starved_total",
            "Times a router wanted more of a shared limit and the other routers held the rest.",
            Kind::Counter,
        );
        w.sample(&[], c.starved);
        let per_peer = |w: &mut Exposition<'_>,
                        name: &str,
                        help: &str,
                        f: &dyn Fn(&PeerView) -> Option<i128>| {
            w.family(name, help, Kind::Gauge);
            for p in &view.peers {
                if let Some(v) = f(p) {
                    w.sample(&[("peer", &p.spec.name)], exact_i(v));
                }
            }
        };
        per_peer(
            w,
            "ilp_cluster_ceiling",
            "What this router may let a shared peer owe (posted plus held), as its core holds it.",
            &|p| p.status.map(|s| s.ceiling),
        );
        per_peer(
            w,
            "ilp_cluster_granted",
            "The ceiling the shared store holds for this router.",
            &|p| p.reconciled.then_some(p.granted),
        );
        per_peer(
            w,
            "ilp_cluster_balance",
            "A shared peer's balance over every router: the sum of their published posted \
             balances.",
            &|p| p.record.as_ref().map(|r| r.posted()),
        );
    }

    /// `GET /cluster`.
    pub(super) fn cluster(&self) -> Response {
        let Some(cluster) = self.current().cluster_state().cloned() else {
            return Response::error(404, "no [cluster_state] in the config");
        };
        let view = self
            .shared
            .cluster
            .view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let peers: Vec<Value> = view
            .peers
            .iter()
            .map(|p| {
                let boxes: serde_json::Map<String, Value> = p
                    .record
                    .iter()
                    .flat_map(|r| &r.boxes)
                    .map(|(id, e)| {
                        (
                            id.clone(),
                            json!({
                                "ceiling": e.ceiling.to_string(),
                                "posted": e.posted.to_string(),
                                "at_ms": e.at_ms,
                                "released": e.released,
                            }),
                        )
                    })
                    .collect();
                json!({
                    "name": p.spec.name,
                    "max_balance": p.spec.max_balance.to_string(),
                    "reconciled": p.reconciled,
                    "granted": p.granted.to_string(),
                    "ceiling": p.status.map(|s| s.ceiling.to_string()),
                    "used": p.status.map(|s| s.used.to_string()),
                    "posted": p.status.map(|s| s.posted.to_string()),
                    "held": p.status.map(|s| s.held.to_string()),
                    "balance": p.record.as_ref().map(|r| r.posted().to_string()),
                    "ceilings_total": p.record.as_ref().map(|r| r.ceilings().to_string()),
                    "boxes": boxes,
                    "last_error": p.last_error,
                })
            })
            .collect();
        let c = view.counters;
        Response::json(
            200,
            json!({
                "box_id": cluster.box_id,
                "etcd": cluster.etcd,
                "endpoint": view.endpoint,
                "fenced": view.fenced,
                "store": {"txn_ok": c.txn_ok, "txn_conflict": c.txn_conflict,
                          "errors": c.store_errors, "starved": c.starved, "requests": view.requests},
                "peers": peers,
            }),
        )
    }

    /// `POST /cluster/release`: `{"peer","box","reason"}`.
    pub(super) fn release(&self, request: &Request) -> Response {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            peer: String,
            #[serde(rename = "box")]
            box_id: String,
            reason: String,
        }
        let config = self.current();
        let Some(cluster) = config.cluster_state() else {
            return Response::error(404, "no [cluster_state] in the config");
        };
        let body: Body = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(e) => {
                return Response::error(
                    400,
                    &format!(
                        "expected {{\"peer\": \"…\", \"box\": \"…\", \"reason\": \"…\"}}: {e}"
                    ),
                )
            }
        };
        if !config.shared_peers().any(|p| p.name == body.peer) {
            return Response::error(
                404,
                &format!("{:?} is not a peer with shared_limit", body.peer),
            );
        }
        if body.reason.len() > 1000 {
            return Response::error(400, "reason: at most 1000 bytes");
        }
        let timeout = Duration::from_millis(cluster.timeout_ms);
        let client = match EtcdClient::new(&cluster.etcd, timeout) {
            Ok(client) => client,
            Err(e) => return Response::error(500, &e),
        };
        let mut store = EtcdStore(client);
        let result = crate::cluster::release(
            &mut store,
            &cluster.prefix,
            &body.peer,
            &body.box_id,
            &cluster.box_id,
            &body.reason,
        );
        match result {
            Ok(before) => {
                tracing::warn!(peer = %body.peer, box_id = %body.box_id, reason = %body.reason,
                    ceiling = %before.ceiling, posted = %before.posted,
                    "admin: released what a router held of a shared limit");
                Response::json(
                    200,
                    json!({"peer": body.peer, "box": body.box_id, "released": true,
                           "ceiling_before": before.ceiling.to_string(),
                           "ceiling": before.posted.to_string()}),
                )
            }
            Err(e) if e.contains("holds nothing") || e.contains("no shared record") => {
                Response::error(404, &e)
            }
            Err(e) if e.contains("is this router") || e.contains("reason is required") => {
                Response::error(400, &e)
            }
            Err(e) => Response::error(503, &format!("the shared store: {e}")),
        }
    }
}
