//! Tests of the route speaker: sync, learning, filters, gaps, withdrawals, expiry, export.

use super::*;

const NOW: i64 = 1_900_000_000_000;
const CHILD: PeerId = PeerId(0);
const PEER: PeerId = PeerId(1);
const PARENT: PeerId = PeerId(2);
const THEIRS: RoutingTableId = RoutingTableId([7; 16]);

fn peer(relation: Relation) -> SpeakerPeer {
    SpeakerPeer {
        relation,
        send_routes: relation != Relation::Parent,
        receive_routes: relation != Relation::Child,
        routes_max: 100,
        path_max: 8,
    }
}

/// A child, a peer and a parent, with the default switches.
fn three() -> Vec<SpeakerPeer> {
    vec![
        peer(Relation::Child),
        peer(Relation::Peer),
        peer(Relation::Parent),
    ]
}

/// A speaker at `g.router` with a child, a peer and a parent, all linked up, originating its
/// own address.
fn speaker() -> Speaker {
    let mut s = Speaker::new("g.router", RoutingTableId([1; 16]), [9; 32]);
    s.set_peers(three(), NOW);
    s.set_local(vec![LocalRoute {
        prefix: "g.router".into(),
        via: Vec::new(),
        covers: false,
    }]);
    for p in [CHILD, PEER, PARENT] {
        s.set_link(p, true, NOW);
    }
    s
}

fn sync(s: &mut Speaker, peer: PeerId, table: RoutingTableId, epoch: u32) {
    let control = RouteControlRequest {
        mode: Mode::Sync,
        last_known_routing_table_id: table,
        last_known_epoch: epoch,
        features: Vec::new(),
    };
    s.handle_request(peer, Request::Control(control), NOW)
        .unwrap();
}

fn update(from: u32, to: u32, new: &[(&str, &[&str])], withdrawn: &[&str]) -> Request {
    Request::Update(RouteUpdateRequest {
        routing_table_id: THEIRS,
        current_epoch_index: to,
        from_epoch_index: from,
        to_epoch_index: to,
        hold_down_time_ms: 45_000,
        speaker: "g.other".into(),
        new_routes: new
            .iter()
            .map(|(prefix, path)| Route {
                prefix: (*prefix).into(),
                path: path.iter().map(|h| (*h).to_owned()).collect(),
                auth: [3; 32],
                props: Vec::new(),
            })
            .collect(),
        withdrawn_routes: withdrawn.iter().map(|w| (*w).to_owned()).collect(),
    })
}

/// Everything queued, decoded: (peer, control or update).
fn sent(s: &mut Speaker) -> Vec<(PeerId, u32, Request)> {
    let mut out = Vec::new();
    while let Some(o) = s.poll_send() {
        let request = if o.destination == CCP_CONTROL_DESTINATION {
            Request::Control(RouteControlRequest::decode(&o.payload).unwrap())
        } else {
            Request::Update(RouteUpdateRequest::decode(&o.payload).unwrap())
        };
        out.push((o.peer, o.id, request));
    }
    out
}

fn updates_to(out: &[(PeerId, u32, Request)], to: PeerId) -> Vec<(u32, RouteUpdateRequest)> {
    out.iter()
        .filter(|(p, _, _)| *p == to)
        .filter_map(|(_, id, r)| match r {
            Request::Update(u) => Some((*id, u.clone())),
            Request::Control(_) => None,
        })
        .collect()
}

fn prefixes(update: &RouteUpdateRequest) -> Vec<&str> {
    update
        .new_routes
        .iter()
        .map(|r| r.prefix.as_str())
        .collect()
}

#[test]
fn links_up_ask_parents_and_peers_for_their_routes() {
    let mut s = speaker();
    s.tick(NOW);
    let out = sent(&mut s);
    let asked: Vec<PeerId> = out
        .iter()
        .filter(|(_, _, r)| matches!(r, Request::Control(c) if c.mode == Mode::Sync))
        .map(|(p, _, _)| *p)
        .collect();
    assert_eq!(asked, [PEER, PARENT], "a child is not asked");
    // A refused control request is sent again after 1 s, then 2 s, 4 s, … up to RETRY_MS.
    let (_, mut id, _) = out.iter().find(|(p, _, _)| *p == PEER).unwrap();
    let mut at = NOW;
    for delay in [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000] {
        s.handle_reply(id, false, at);
        s.tick(at + delay - 1);
        assert!(sent(&mut s).is_empty(), "not before {delay} ms");
        at += delay;
        s.tick(at);
        let again = sent(&mut s);
        assert_eq!(again.len(), 1, "again after {delay} ms");
        id = again[0].1;
    }
}

#[test]
fn a_synced_peer_gets_our_table_then_only_heartbeats_and_news() {
    let mut s = speaker();
    s.tick(NOW);
    sent(&mut s);
    sync(&mut s, CHILD, RoutingTableId([0; 16]), 0);
    s.tick(NOW);
    let out = sent(&mut s);
    let updates = updates_to(&out, CHILD);
    assert_eq!(updates.len(), 1);
    let (id, first) = &updates[0];
    assert_eq!(
        (first.from_epoch_index, first.to_epoch_index),
        (0, s.epoch())
    );
    assert_eq!(prefixes(first), ["g.router"]);
    assert_eq!(
        first.new_routes[0].path,
        ["g.router"],
        "our address first, as JS does"
    );
    assert_eq!(first.hold_down_time_ms, HOLD_DOWN_MS);
    assert_eq!(first.speaker, "g.router");
    // Nothing more until it is fulfilled, and then nothing new until the heartbeat.
    s.tick(NOW + 1);
    assert!(updates_to(&sent(&mut s), CHILD).is_empty());
    s.handle_reply(*id, true, NOW + 1);
    s.tick(NOW + 2);
    assert!(updates_to(&sent(&mut s), CHILD).is_empty());
    s.tick(NOW + BROADCAST_INTERVAL_MS);
    let beat = updates_to(&sent(&mut s), CHILD);
    assert_eq!(beat.len(), 1);
    assert!(beat[0].1.new_routes.is_empty() && beat[0].1.withdrawn_routes.is_empty());
    assert_eq!(beat[0].1.from_epoch_index, s.epoch());
    // A parent asking is refused: we do not send routes to parents by default.
    let control = RouteControlRequest {
        mode: Mode::Sync,
        last_known_routing_table_id: RoutingTableId([0; 16]),
        last_known_epoch: 0,
        features: Vec::new(),
    };
    let refused = s.handle_request(PARENT, Request::Control(control), NOW);
    assert!(refused.unwrap_err().contains("not configured to send"));
}

#[test]
fn a_learned_route_is_used_and_relayed_with_our_address_and_a_hashed_auth() {
    let mut s = speaker();
    sync(&mut s, CHILD, RoutingTableId([0; 16]), 0);
    s.handle_request(PEER, update(0, 1, &[("g.far", &["g.far"])], &[]), NOW)
        .unwrap();
    assert!(s.take_changed());
    assert_eq!(s.best_routes().collect::<Vec<_>>(), [("g.far", PEER)]);
    s.tick(NOW);
    let updates = updates_to(&sent(&mut s), CHILD);
    let far = updates[0]
        .1
        .new_routes
        .iter()
        .find(|r| r.prefix == "g.far")
        .expect("relayed to the child");
    assert_eq!(far.path, ["g.router", "g.far"]);
    assert_eq!(far.auth, <[u8; 32]>::from(Sha256::digest([3u8; 32])));
    // Never back to the peer it came from, and not to a parent (a peer's route).
    sync_parent_and_peer(&mut s);
    s.tick(NOW);
    let out = sent(&mut s);
    for to in [PEER, PARENT] {
        let update = &updates_to(&out, to)[0].1;
        assert!(!prefixes(update).contains(&"g.far"), "{to:?}: {update:?}");
    }
}

/// Lets the parent and the peer ask for our routes (the parent only by switch).
fn sync_parent_and_peer(s: &mut Speaker) {
    let mut config = three();
    config[2].send_routes = true;
    s.set_peers(config, NOW);
    sync(s, PEER, RoutingTableId([0; 16]), 0);
    sync(s, PARENT, RoutingTableId([0; 16]), 0);
}

#[test]
fn a_childs_route_goes_to_the_parent() {
    let mut s = speaker();
    let mut config = three();
    config[0].receive_routes = true;
    config[2].send_routes = true;
    s.set_peers(config, NOW);
    s.handle_request(CHILD, update(0, 1, &[("g.kid", &[])], &[]), NOW)
        .unwrap();
    sync(&mut s, PARENT, RoutingTableId([0; 16]), 0);
    s.tick(NOW);
    let update = &updates_to(&sent(&mut s), PARENT)[0].1;
    assert!(prefixes(update).contains(&"g.kid"), "{update:?}");
}

#[test]
fn the_import_filters_and_limits_drop_what_they_must() {
    let mut s = speaker();
    let mut routes: Vec<(&str, &[&str])> = vec![
        ("g.router", &[]),
        ("g.router.x", &[]),
        ("g", &[]),
        ("test.other", &[]),
        ("g.loop", &["g.a", "g.router"]),
        (
            "g.long",
            &[
                "g.1", "g.2", "g.3", "g.4", "g.5", "g.6", "g.7", "g.8", "g.9",
            ],
        ),
        ("g.good", &[]),
    ];
    s.handle_request(PEER, update(0, 1, &routes, &[]), NOW)
        .unwrap();
    let best: Vec<&str> = s.best_routes().map(|(p, _)| p).collect();
    assert_eq!(best, ["g.good"]);
    assert_eq!(s.counters().routes_filtered, 6);
    // Past routes_max (100) the rest are dropped.
    let names: Vec<String> = (0..150).map(|i| format!("g.n{i}")).collect();
    routes = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    s.handle_request(PEER, update(1, 2, &routes, &[]), NOW)
        .unwrap();
    assert_eq!(s.best_routes().count(), 100);
}

#[test]
fn gaps_new_tables_old_updates_and_withdrawals() {
    let mut s = speaker();
    s.tick(NOW);
    for (_, id, _) in sent(&mut s) {
        s.handle_reply(id, true, NOW);
    }
    s.handle_request(PEER, update(0, 3, &[("g.far", &[])], &[]), NOW)
        .unwrap();
    // A gap: refused, and we ask again from where we are.
    let gap = s.handle_request(PEER, update(5, 6, &[("g.gap", &[])], &[]), NOW);
    assert!(gap.unwrap_err().contains("gap"));
    s.tick(NOW);
    let out = sent(&mut s);
    assert!(
        matches!(&out[..], [(PEER, _, Request::Control(c))] if c.last_known_epoch == 3 && c.last_known_routing_table_id == THEIRS),
        "{out:?}"
    );
    // An old update is fulfilled and ignored.
    s.handle_request(PEER, update(0, 2, &[("g.old", &[])], &[]), NOW)
        .unwrap();
    assert!(s.learned().iter().all(|l| l.prefix != "g.old"));
    // A withdrawal.
    s.handle_request(PEER, update(3, 4, &[], &["g.far"]), NOW)
        .unwrap();
    assert_eq!(s.best_routes().count(), 0);
    // A new table id (the peer restarted) voids what it said before.
    s.handle_request(PEER, update(0, 1, &[("g.a", &[])], &[]), NOW)
        .unwrap();
    let Request::Update(mut fresh) = update(0, 1, &[("g.b", &[])], &[]) else {
        unreachable!()
    };
    fresh.routing_table_id = RoutingTableId([8; 16]);
    s.handle_request(PEER, Request::Update(fresh), NOW).unwrap();
    let best: Vec<&str> = s.best_routes().map(|(p, _)| p).collect();
    assert_eq!(best, ["g.b"]);
}

#[test]
fn a_link_down_or_a_silent_peer_withdraws_its_routes_downstream() {
    let mut s = speaker();
    sync(&mut s, CHILD, RoutingTableId([0; 16]), 0);
    s.handle_request(PEER, update(0, 1, &[("g.far", &[])], &[]), NOW)
        .unwrap();
    s.tick(NOW);
    let (id, _) = updates_to(&sent(&mut s), CHILD).remove(0);
    s.handle_reply(id, true, NOW);
    s.take_changed();
    s.set_link(PEER, false, NOW);
    assert!(s.take_changed());
    assert_eq!(s.best_routes().count(), 0);
    s.tick(NOW + 1);
    let withdrawal = &updates_to(&sent(&mut s), CHILD)[0].1;
    assert_eq!(withdrawal.withdrawn_routes, ["g.far"]);
    // Hold-down: routes from a peer that stops updating expire.
    s.set_link(PEER, true, NOW);
    s.handle_request(PEER, update(0, 1, &[("g.far", &[])], &[]), NOW)
        .unwrap();
    s.tick(NOW + 44_000);
    assert_eq!(s.best_routes().count(), 1);
    s.tick(NOW + 45_000);
    assert_eq!(s.best_routes().count(), 0);
    assert_eq!(s.counters().routes_expired, 1);
}

#[test]
fn a_child_route_beats_a_peer_route_and_a_shorter_path_a_longer_one() {
    let mut s = speaker();
    let mut config = three();
    config[0].receive_routes = true;
    s.set_peers(config, NOW);
    s.handle_request(PARENT, update(0, 1, &[("g.x", &[])], &[]), NOW)
        .unwrap();
    s.handle_request(PEER, update(0, 1, &[("g.x", &["g.a", "g.b"])], &[]), NOW)
        .unwrap();
    assert_eq!(s.best_routes().collect::<Vec<_>>(), [("g.x", PEER)]);
    s.handle_request(
        CHILD,
        update(0, 1, &[("g.x", &["g.a", "g.b", "g.c"])], &[]),
        NOW,
    )
    .unwrap();
    assert_eq!(s.best_routes().collect::<Vec<_>>(), [("g.x", CHILD)]);
    // A local prefix is never replaced by a learned one in what we advertise.
    s.set_local(vec![LocalRoute {
        prefix: "g.x".into(),
        via: vec![PEER],
        covers: false,
    }]);
    sync(&mut s, CHILD, RoutingTableId([0; 16]), 0);
    s.tick(NOW);
    let update = &updates_to(&sent(&mut s), CHILD)[0].1;
    let x = update
        .new_routes
        .iter()
        .find(|r| r.prefix == "g.x")
        .unwrap();
    assert_eq!(x.path, ["g.router"], "advertised as ours: {x:?}");
}

#[test]
fn a_big_table_goes_out_in_updates_of_at_most_fifty_epochs() {
    let mut s = speaker();
    let local: Vec<LocalRoute> = (0..120)
        .map(|i| LocalRoute {
            prefix: format!("g.router{i}"),
            via: Vec::new(),
            covers: false,
        })
        .collect();
    s.set_local(local);
    sync(&mut s, CHILD, RoutingTableId([0; 16]), 0);
    let mut got = std::collections::BTreeSet::new();
    let mut at = 0;
    for round in 0..10 {
        s.tick(NOW + round);
        for (id, update) in updates_to(&sent(&mut s), CHILD) {
            assert_eq!(update.from_epoch_index, at);
            assert!(update.to_epoch_index - update.from_epoch_index <= EPOCHS_PER_UPDATE_MAX);
            got.extend(update.new_routes.iter().map(|r| r.prefix.clone()));
            got.extend(update.withdrawn_routes.iter().cloned());
            at = update.to_epoch_index;
            s.handle_reply(id, true, NOW + round);
        }
    }
    assert_eq!(at, s.epoch());
    assert_eq!(
        got.len(),
        121,
        "every prefix went out once (g.router withdrawn)"
    );
}

#[test]
fn a_group_is_advertised_once_and_its_backends_own_routes_are_not_relayed() {
    let mut s = speaker();
    // The peer and the parent are the backends of a group at g.cluster.
    let mut config = vec![
        peer(Relation::Child),
        peer(Relation::Peer),
        peer(Relation::Peer),
    ];
    config[2].receive_routes = true;
    s.set_peers(config, NOW);
    s.set_local(vec![
        LocalRoute {
            prefix: "g.router".into(),
            via: Vec::new(),
            covers: false,
        },
        LocalRoute {
            prefix: "g.cluster".into(),
            via: vec![PEER, PARENT],
            covers: true,
        },
    ]);
    s.handle_request(PEER, update(0, 1, &[("g.cluster.one", &[])], &[]), NOW)
        .unwrap();
    s.handle_request(PARENT, update(0, 1, &[("g.elsewhere", &[])], &[]), NOW)
        .unwrap();
    // Used here (the more specific route), but told to nobody: the group covers it.
    assert!(s
        .best_routes()
        .any(|(p, peer)| p == "g.cluster.one" && peer == PEER));
    sync(&mut s, CHILD, RoutingTableId([0; 16]), 0);
    sync(&mut s, PARENT, RoutingTableId([0; 16]), 0);
    s.tick(NOW);
    let out = sent(&mut s);
    let child = &updates_to(&out, CHILD)[0].1;
    let mut told = prefixes(child);
    told.sort();
    assert_eq!(told, ["g.cluster", "g.elsewhere", "g.router"]);
    let backend = &updates_to(&out, PARENT)[0].1;
    assert!(!prefixes(backend).contains(&"g.cluster"), "{backend:?}");
}

#[test]
fn a_request_whose_answer_never_comes_counts_as_refused_at_its_deadline() {
    let mut s = speaker();
    sync(&mut s, CHILD, RoutingTableId([0; 16]), 0);
    s.tick(NOW);
    assert_eq!(updates_to(&sent(&mut s), CHILD).len(), 1);
    // No answer: nothing more while we wait, then it counts as refused and is sent again
    // after RETRY_MS.
    s.tick(NOW + ANSWER_WAIT_MS - 1);
    assert!(updates_to(&sent(&mut s), CHILD).is_empty());
    s.tick(NOW + ANSWER_WAIT_MS);
    assert!(updates_to(&sent(&mut s), CHILD).is_empty());
    s.tick(NOW + ANSWER_WAIT_MS + RETRY_MS);
    assert_eq!(updates_to(&sent(&mut s), CHILD).len(), 1);
}
