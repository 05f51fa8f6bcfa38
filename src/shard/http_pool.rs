//! One core's keep-alive pools of ILP-over-HTTP connections to the peers we POST to
//! (`http_url`). A pool fills the first connection with room in its pipeline before the next
//! (fewer, fuller connections mean fewer and larger writes), queues a Prepare while none has
//! room, and asks for one more connection while it has fewer than
//! `http_connections_per_peer_max`. It writes requests into the link table and reports the
//! out tags that failed; the core answers them.
//!
//! Never losing a request it could have sent:
//! - `http_connections_min` connections are opened ahead of need and kept (redialled with
//!   the `reconnect_*` backoff after failed connects), so a Prepare after a quiet spell does
//!   not wait for a connect.
//! - A connection idle for `http_client_idle_timeout_ms` is closed by us, before the server's
//!   keep-alive timeout, so that no request is written onto a connection the server is just
//!   closing; a closing connection is never picked.
//! - When a connection ends, the requests its writer never took were never written: they go
//!   to another connection or a fresh one ([`HttpPools::retract`]). The requests it took may
//!   have reached the peer and are never sent again (no double payment): they fail with T01.
//! - The waiting requests fail with T01 only when a connect to the peer failed and no
//!   connection is left.

use super::links::{HttpClientLink, LinkId, Links, Posted, Transport};
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
    /// Connects that failed in a row (a connection closed without one answer counts too);
    /// 0 once a connection answers.
    failures: u32,
    /// No connection is opened ahead of need before this (Unix ms): the backoff.
    dial_at: i64,
}

/// The pools of every peer (none for a peer we do not POST to).
#[derive(Debug)]
pub(crate) struct HttpPools {
    pools: Vec<Option<Pool>>,
    /// Requests pipelined per connection (`http_requests_per_connection_max`).
    depth: usize,
    /// Connections per peer (`http_connections_per_peer_max`).
    connections_max: usize,
    /// Connections per peer opened ahead of need (`http_connections_min`).
    connections_min: usize,
    reconnect_min_ms: u64,
    reconnect_max_ms: u64,
    queue_max: usize,
    /// The latest `now` seen by `tick` or `gone` (for [`reachable`](Self::reachable)).
    clock: i64,
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

/// What [`HttpPools::gone`] decided.
#[derive(Debug, Default)]
pub(crate) struct Gone {
    /// Out tags that fail with T01.
    pub(crate) failed: Vec<u64>,
    /// Requests never written (the peer cannot be reached): (out tag, expiry, bytes). They may
    /// go to another backend of a group; else T01.
    pub(crate) unsent: Vec<(u64, i64, Vec<u8>)>,
    /// Open one more connection for the waiting requests.
    pub(crate) dial: bool,
}

/// The pool of `peer`, if we POST to it.
fn pool_of(peer: &crate::config::Peer) -> Option<Pool> {
    peer.http().map(|dial| Pool {
        head: crate::link::http::request_head_prefix(
            &dial.url.path,
            &format!("{}:{}", dial.url.host, dial.url.port),
            dial.token.expose(),
        ),
        ..Pool::default()
    })
}

impl HttpPools {
    pub(crate) fn new(config: &Config) -> Self {
        let limits = config.limits();
        HttpPools {
            pools: config.peers().iter().map(pool_of).collect(),
            depth: limits.http_requests_per_connection_max,
            connections_max: limits.http_connections_per_peer_max,
            connections_min: limits.http_connections_min,
            reconnect_min_ms: limits.reconnect_min_ms,
            reconnect_max_ms: limits.reconnect_max_ms,
            queue_max: limits.link_queue_bytes_max,
            clock: 0,
        }
    }

    /// Pools for the peers a reload added (those past the last slot).
    pub(crate) fn add_peers(&mut self, config: &Config) {
        let known = self.pools.len();
        self.pools
            .extend(config.peers()[known..].iter().map(pool_of));
    }

    /// Whether we POST `peer`'s Prepares over HTTP.
    pub(crate) fn has(&self, peer: PeerId) -> bool {
        self.pools[peer.index()].is_some()
    }

    /// Whether we POST to `peer` and it can be reached as far as we know: its last connect
    /// did not fail, or a connection is open. After a failure it is unreachable until a
    /// connection opens; with `http_connections_min` 0 nothing dials it ahead of need, so it
    /// counts as reachable again once the backoff is over (the next Prepare dials it, and
    /// moves to another backend of a group if that connect fails too).
    pub(crate) fn reachable(&self, peer: PeerId) -> bool {
        self.pools[peer.index()].as_ref().is_some_and(|p| {
            p.failures == 0
                || !p.ready.is_empty()
                || (self.connections_min == 0 && self.clock >= p.dial_at)
        })
    }

    /// Sends a Prepare to `to`: on an open connection with room in its pipeline, or queued;
    /// T03 when the queue holds as much as the whole pool could have in flight.
    pub(crate) fn send(
        &mut self,
        links: &mut Links,
        now: i64,
        to: PeerId,
        tag: u64,
        expires_at: i64,
        packet: &[u8],
    ) -> Result<Sent, RejectReason> {
        if let Some(id) = self.with_room(links, now, to, None) {
            self.write(links, now, id, tag, expires_at, packet);
            return Ok(Sent::Written);
        }
        let pool = self.pools[to.index()].as_mut().expect("an HTTP peer");
        if pool.backlog.len() >= self.connections_max * self.depth {
            return Err(RejectReason::ConnectorBusy);
        }
        pool.backlog.push_back((tag, expires_at, packet.to_vec()));
        if pool.open < self.connections_max {
            pool.open += 1;
            return Ok(Sent::QueuedDial);
        }
        Ok(Sent::Queued)
    }

    /// The first open connection to `peer` (other than `except`) that takes a request now.
    fn with_room(
        &self,
        links: &Links,
        now: i64,
        peer: PeerId,
        except: Option<LinkId>,
    ) -> Option<LinkId> {
        let pool = self.pools[peer.index()].as_ref()?;
        pool.ready
            .iter()
            .copied()
            .find(|&id| Some(id) != except && self.takes_request(links, now, id))
    }

    /// Whether connection `id` takes another request at `now`: open, not closing, with room in
    /// its pipeline, and not waiting on a request past its expiry (the answers come in order,
    /// so everything behind that one would wait for an answer nobody needs, and the
    /// connection is about to close as stale).
    fn takes_request(&self, links: &Links, now: i64, id: LinkId) -> bool {
        links
            .get(id)
            .filter(|l| !l.closing)
            .and_then(|l| l.http_client())
            .is_some_and(|c| {
                c.busy.len() < self.depth && c.busy.front().is_none_or(|p| p.expires_at >= now)
            })
    }

    /// Writes one POST on a client connection.
    fn write(
        &mut self,
        links: &mut Links,
        now: i64,
        id: LinkId,
        tag: u64,
        expires_at: i64,
        packet: &[u8],
    ) {
        let Some(link) = links.get_mut(id) else {
            return;
        };
        let start = link.stream_at();
        let Some(client) = link.http_client_mut() else {
            return;
        };
        let Some(pool) = self.pools[client.peer.index()].as_ref() else {
            return;
        };
        let mut length = [0u8; 24];
        let n = crate::link::http::write_content_length(packet.len(), &mut length);
        let body = start + (pool.head.len() + n) as u64;
        client.busy.push_back(Posted {
            tag,
            expires_at,
            start,
            body,
            end: body + packet.len() as u64,
        });
        client.active_at = now;
        client.posted += 1;
        links.push_raw(
            id.index,
            &[&pool.head, &length[..n], packet],
            self.queue_max,
        );
    }

    /// A client connection is open, or answered: fill its pipeline from the queue.
    pub(crate) fn ready(&mut self, links: &mut Links, now: i64, id: LinkId, peer: PeerId) {
        let Some(pool) = self.pools[peer.index()].as_mut() else {
            return;
        };
        if !pool.ready.contains(&id) {
            pool.ready.push(id);
        }
        self.fill(links, now, id, peer);
    }

    /// Writes waiting requests on `id` while its pipeline has room.
    fn fill(&mut self, links: &mut Links, now: i64, id: LinkId, peer: PeerId) {
        loop {
            if !self.takes_request(links, now, id) {
                break;
            }
            let pool = self.pools[peer.index()].as_mut().expect("checked");
            let Some((tag, expires_at, packet)) = pool.backlog.pop_front() else {
                break;
            };
            self.write(links, now, id, tag, expires_at, &packet);
        }
    }

    /// The connection `id` is closing (the server said `Connection: close`, its reader ended,
    /// or we close it): the requests its writer has not taken were never written, so they
    /// leave its queue for the front of the pool's, in order, and go to other connections
    /// with room. Returns the out tags whose bytes were lost with a dropped queue (T01).
    pub(crate) fn retract(&mut self, links: &mut Links, now: i64, id: LinkId) -> Vec<u64> {
        let Some(link) = links.get_mut(id) else {
            return Vec::new();
        };
        let taken = link.taken();
        let out = std::mem::take(&mut link.out);
        let Some(client) = link.http_client_mut() else {
            link.out = out;
            return Vec::new();
        };
        let peer = client.peer;
        let keep = client.busy.iter().take_while(|p| p.start < taken).count();
        let unwritten: Vec<Posted> = client.busy.drain(keep..).collect();
        let mut lost = Vec::new();
        let mut moved = Vec::with_capacity(unwritten.len());
        for posted in unwritten {
            let body = usize::try_from(posted.body - taken).unwrap_or(usize::MAX);
            let end = usize::try_from(posted.end - taken).unwrap_or(usize::MAX);
            match out.get(body..end) {
                Some(packet) => moved.push((posted.tag, posted.expires_at, packet.to_vec())),
                // The queue overflowed and was dropped: the bytes are gone.
                None => lost.push(posted.tag),
            }
        }
        // Only requests go on a connection of ours: what the writer has not taken is theirs.
        let pool = self.pools[peer.index()].as_mut().expect("an HTTP peer");
        for request in moved.into_iter().rev() {
            pool.backlog.push_front(request);
        }
        while let Some(other) = self.with_room(links, now, peer, Some(id)) {
            self.fill(links, now, other, peer);
            let pool = self.pools[peer.index()].as_ref().expect("an HTTP peer");
            if pool.backlog.is_empty() {
                break;
            }
        }
        lost
    }

    /// A connect to `peer` failed (`id` none), or its connection `id` closed (after
    /// [`retract`](Self::retract)). Its requests in flight may have reached the peer and fail
    /// (T01), never sent again. The waiting ones fail too when the connect failed and no
    /// connection is left; otherwise a new connection is wanted for them.
    pub(crate) fn gone(
        &mut self,
        links: &mut Links,
        now: i64,
        peer: PeerId,
        id: Option<LinkId>,
    ) -> Gone {
        let mut gone = Gone::default();
        self.clock = self.clock.max(now);
        let client = id
            .and_then(|id| links.get_mut(id))
            .and_then(|l| l.http_client_mut());
        // A connection that took requests and answered none failed as a connect would have.
        let failed = match (id, &client) {
            (None, _) => true,
            (Some(_), Some(c)) => c.answered == 0 && c.posted > 0,
            (Some(_), None) => false,
        };
        if let Some(client) = client {
            gone.failed.extend(client.busy.drain(..).map(|p| p.tag));
        }
        let Some(pool) = self.pools[peer.index()].as_mut() else {
            return gone;
        };
        pool.open = pool.open.saturating_sub(1);
        if let Some(id) = id {
            pool.ready.retain(|&i| i != id);
        }
        if failed {
            pool.failures = pool.failures.saturating_add(1);
            let shift = pool.failures.saturating_sub(1).min(20);
            let backoff = self
                .reconnect_min_ms
                .saturating_mul(1 << shift)
                .min(self.reconnect_max_ms);
            pool.dial_at = now.saturating_add(i64::try_from(backoff).unwrap_or(i64::MAX / 4));
        }
        if pool.backlog.is_empty() {
            return gone;
        }
        if id.is_none() && pool.open == 0 {
            // The peer cannot be reached now.
            gone.unsent.extend(pool.backlog.drain(..));
        } else if !failed && pool.open < self.connections_max {
            pool.open += 1;
            gone.dial = true;
        }
        // Else the waiting requests wait for a connection still open, or for the one `tick`
        // opens after the backoff (or their expiry).
        gone
    }

    /// The open connections to `peer`.
    pub(crate) fn links_of(&self, peer: PeerId) -> Vec<LinkId> {
        self.pools[peer.index()]
            .as_ref()
            .map_or_else(Vec::new, |p| p.ready.clone())
    }

    /// The peer answered the oldest of our requests on `id`: its out tag.
    pub(crate) fn answered(&mut self, links: &mut Links, now: i64, id: LinkId) -> Option<u64> {
        let link = links.get_mut(id)?;
        let Transport::HttpClient(client) = &mut link.transport else {
            return None;
        };
        let posted = client.busy.pop_front()?;
        client.active_at = now;
        client.answered += 1;
        if let Some(pool) = self.pools[client.peer.index()].as_mut() {
            pool.failures = 0;
        }
        Some(posted.tag)
    }

    /// Periodic work: drops waiting requests past their expiry (the engine answered them
    /// R00), and returns the peers to open a connection to, one entry per connection, to
    /// keep `http_connections_min` open (after the backoff).
    pub(crate) fn tick(
        &mut self,
        now: i64,
        dials: &mut Vec<PeerId>,
        drained: impl Fn(PeerId) -> bool,
    ) {
        self.clock = self.clock.max(now);
        for (i, pool) in self.pools.iter_mut().enumerate() {
            let Some(pool) = pool else {
                continue;
            };
            if drained(PeerId(i as u16)) {
                // Nothing is opened for a drained peer; its backlog is answered by expiry.
                continue;
            }
            pool.backlog.retain(|&(_, expires_at, _)| expires_at >= now);
            if now < pool.dial_at {
                continue;
            }
            let wanted = self
                .connections_min
                .max(usize::from(!pool.backlog.is_empty()));
            while pool.open < wanted {
                pool.open += 1;
                dials.push(PeerId(i as u16));
            }
        }
    }
}

/// A new connection of ours to `peer`, opened at `now`.
pub(crate) fn client_transport(peer: PeerId, now: i64) -> Transport {
    Transport::HttpClient(HttpClientLink::new(peer, now))
}
