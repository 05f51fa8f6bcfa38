//! One core's keep-alive pools of ILP-over-HTTP connections to the peers we POST to
//! (`http_url`). A pool fills the first connection with room in its pipeline before the next
//! (fewer, fuller connections mean fewer and larger writes), queues a Prepare while none has
//! room, and asks for one more connection while it has fewer than
//! `http_connections_per_peer_max`. It writes requests into the link table and reports the
//! out tags that failed; the core answers them.

use super::links::{LinkId, Links, Transport};
use crate::config::Config;
use crate::engine::{PeerId, RejectReason};
use std::collections::VecDeque;

/// One peer's pool on this core.
#[derive(Debug, Default)]
struct Pool {
    /// The request head up to the `Content-Length` value, made once.
    head: Vec<u8>,
    /// Connections open, in the order they are tried.
    ready: Vec<LinkId>,
    /// Connections open or being opened.
    open: usize,
    /// Prepares waiting for room on a connection: (out tag, expiry, bytes).
    backlog: VecDeque<(u64, i64, Vec<u8>)>,
}

/// The pools of every peer (none for a peer we do not POST to).
#[derive(Debug)]
pub(crate) struct HttpPools {
    pools: Vec<Option<Pool>>,
    /// Requests pipelined per connection (`http_requests_per_connection_max`).
    depth: usize,
    /// Connections per peer (`http_connections_per_peer_max`).
    connections_max: usize,
    queue_max: usize,
}

/// What [`HttpPools::send`] did with a Prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Written on an open connection.
    Written,
    /// Queued; no new connection is needed.
    Queued,
    /// Queued, and one more connection should be opened for it.
    QueuedDial,
}

impl HttpPools {
    pub(crate) fn new(config: &Config) -> Self {
        let limits = config.limits();
        HttpPools {
            pools: config
                .peers()
                .iter()
                .map(|p| {
                    p.http().map(|dial| Pool {
                        head: crate::link::http::request_head_prefix(
                            &dial.url.path,
                            &format!("{}:{}", dial.url.host, dial.url.port),
                            dial.token.expose(),
                        ),
                        ..Pool::default()
                    })
                })
                .collect(),
            depth: limits.http_requests_per_connection_max,
            connections_max: limits.http_connections_per_peer_max,
            queue_max: limits.link_queue_bytes_max,
        }
    }

    /// Whether we POST `peer`'s Prepares over HTTP.
    pub(crate) fn has(&self, peer: PeerId) -> bool {
        self.pools[peer.index()].is_some()
    }

    /// Sends a Prepare to `to`: on an open connection with room in its pipeline, or queued;
    /// T03 when the queue holds as much as the whole pool could have in flight.
    pub(crate) fn send(
        &mut self,
        links: &mut Links,
        to: PeerId,
        tag: u64,
        expires_at: i64,
        packet: &[u8],
    ) -> Result<Sent, RejectReason> {
        let depth = self.depth;
        let pool = self.pools[to.index()].as_mut().expect("an HTTP peer");
        let chosen = pool.ready.iter().copied().find(|&id| {
            links
                .get(id)
                .filter(|l| !l.closing)
                .and_then(|l| l.http_client())
                .is_some_and(|c| c.busy.len() < depth)
        });
        if let Some(id) = chosen {
            self.write(links, id, tag, expires_at, packet);
            return Ok(Sent::Written);
        }
        if pool.backlog.len() >= self.connections_max * depth {
            return Err(RejectReason::ConnectorBusy);
        }
        pool.backlog.push_back((tag, expires_at, packet.to_vec()));
        if pool.open < self.connections_max {
            pool.open += 1;
            return Ok(Sent::QueuedDial);
        }
        Ok(Sent::Queued)
    }

    /// Writes one POST on a client connection.
    fn write(&mut self, links: &mut Links, id: LinkId, tag: u64, expires_at: i64, packet: &[u8]) {
        let Some(client) = links.get_mut(id).and_then(|l| l.http_client_mut()) else {
            return;
        };
        client.busy.push_back((tag, expires_at));
        let peer = client.peer;
        let Some(pool) = self.pools[peer.index()].as_ref() else {
            return;
        };
        let mut length = [0u8; 24];
        let n = crate::link::http::write_content_length(packet.len(), &mut length);
        links.push_raw(
            id.index,
            &[&pool.head, &length[..n], packet],
            self.queue_max,
        );
    }

    /// A client connection is open, or answered: fill its pipeline from the queue.
    pub(crate) fn ready(&mut self, links: &mut Links, id: LinkId, peer: PeerId) {
        let Some(pool) = self.pools[peer.index()].as_mut() else {
            return;
        };
        if !pool.ready.contains(&id) {
            pool.ready.push(id);
        }
        loop {
            let in_flight = links
                .get(id)
                .and_then(|l| l.http_client())
                .map_or(self.depth, |c| c.busy.len());
            if in_flight >= self.depth {
                break;
            }
            let pool = self.pools[peer.index()].as_mut().expect("checked");
            let Some((tag, expires_at, packet)) = pool.backlog.pop_front() else {
                break;
            };
            self.write(links, id, tag, expires_at, &packet);
        }
    }

    /// A client connection could not be opened (`id` none), or closed: returns the out tags
    /// that fail with it (T01): its requests, and the waiting ones when no connection is left.
    pub(crate) fn gone(&mut self, links: &mut Links, peer: PeerId, id: Option<LinkId>) -> Vec<u64> {
        let mut failed: Vec<u64> = id
            .and_then(|id| links.get_mut(id))
            .and_then(|l| l.http_client_mut())
            .map(|c| c.busy.drain(..).map(|(tag, _)| tag).collect())
            .unwrap_or_default();
        let Some(pool) = self.pools[peer.index()].as_mut() else {
            return failed;
        };
        pool.open = pool.open.saturating_sub(1);
        if let Some(id) = id {
            pool.ready.retain(|&i| i != id);
        }
        if pool.open == 0 {
            failed.extend(pool.backlog.drain(..).map(|(tag, _, _)| tag));
        }
        failed
    }

    /// The peer answered the oldest of our requests on `id`: its out tag.
    pub(crate) fn answered(links: &mut Links, id: LinkId) -> Option<u64> {
        let link = links.get_mut(id)?;
        let Transport::HttpClient(client) = &mut link.transport else {
            return None;
        };
        client.busy.pop_front().map(|(tag, _)| tag)
    }
}
