//! The agent against an in-memory store and simulated home cores: several boxes share one
//! peer's limit, with random holds, posts, voids, store outages, a box killed and restarted,
//! and the invariant checked after every step.

use super::*;
use crate::engine::test_rng::Rng;
use std::collections::HashMap;

/// An in-memory store with revisions; `down` makes every call fail.
#[derive(Debug, Default)]
struct MemStore {
    values: HashMap<String, (Record, i64)>,
    revision: i64,
    down: bool,
}

impl Store for MemStore {
    fn read(&mut self, key: &str) -> Result<(Option<Record>, i64), String> {
        if self.down {
            return Err("down".into());
        }
        Ok(match self.values.get(key) {
            Some((record, rev)) => (Some(record.clone()), *rev),
            None => (None, 0),
        })
    }

    fn write(&mut self, key: &str, record: &Record, revision: i64) -> Result<bool, String> {
        if self.down {
            return Err("down".into());
        }
        let current = self.values.get(key).map_or(0, |(_, rev)| *rev);
        if current != revision {
            return Ok(false);
        }
        self.revision += 1;
        self.values
            .insert(key.to_owned(), (record.clone(), self.revision));
        Ok(true)
    }
}

/// One box's home core of the peer, reduced to what the ledger does with a ceiling.
#[derive(Debug, Default, Clone)]
struct FakeCore {
    seq: u64,
    ceiling: i128,
    posted: i128,
    holds: Vec<i128>,
    refused: u64,
}

impl FakeCore {
    fn held(&self) -> i128 {
        self.holds.iter().sum()
    }

    fn status(&self) -> Status {
        Status {
            seq: self.seq,
            ceiling: self.ceiling,
            used: self.posted + self.held(),
            posted: self.posted,
            held: self.held(),
            refused: self.refused,
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Raise { ceiling, seq, .. } => {
                self.ceiling = self.ceiling.max(ceiling);
                self.seq = seq;
            }
            Command::Lower { target, seq, .. } => {
                let used = self.posted + self.held();
                self.ceiling = self.ceiling.min(target.max(used));
                self.seq = seq;
            }
        }
    }

    fn hold(&mut self, amount: i128) -> bool {
        if self.posted + self.held() + amount <= self.ceiling {
            self.holds.push(amount);
            true
        } else {
            self.refused += 1;
            false
        }
    }
}

const PEER: PeerId = PeerId(0);

fn spec(max_balance: u64) -> PeerSpec {
    PeerSpec {
        peer: PEER,
        name: "alice".into(),
        home: 0,
        max_balance,
    }
}

/// A new agent (a new process: a new instance) for `box_id`.
fn agent(box_id: &str, max_balance: u64) -> Agent {
    static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut agent = Agent::new(Settings {
        box_id: box_id.into(),
        prefix: "/t".into(),
        publish_ms: 100,
        idle_ms: 500,
        chunk_divisor: 8,
        instance: format!("{box_id}-{start}"),
    });
    agent.follow(&[spec(max_balance)]);
    agent
}

/// One box: its agent and its core.
struct TestBox {
    agent: Agent,
    core: FakeCore,
    alive: bool,
}

impl TestBox {
    fn step(&mut self, now: u64, store: &mut MemStore) {
        self.agent.on_status(PEER, self.core.status());
        let mut out = Vec::new();
        self.agent.step(now, store, &mut out);
        for (core, command) in out {
            assert_eq!(core, 0);
            self.core.apply(command);
        }
    }
}

fn record(store: &MemStore) -> Record {
    store
        .values
        .get("/t/limits/alice")
        .map(|(r, _)| r.clone())
        .unwrap_or_default()
}

/// The invariant: each live box's core stays under what the store holds for it, and the
/// store's ceilings stay within the limit; so posted plus holds of every box stay within it.
fn check(boxes: &[TestBox], store: &MemStore, max_balance: u64, at: &str) {
    let record = record(store);
    let mut exposure = 0;
    for (i, b) in boxes.iter().enumerate() {
        let id = format!("r{i}");
        let stored = record.boxes.get(&id).map(|e| e.ceiling);
        let used = b.core.posted + b.core.held();
        if b.alive {
            assert!(
                used <= b.core.ceiling,
                "{at}: r{i} used {used} over its ceiling"
            );
            if let Some(stored) = stored {
                assert!(
                    b.core.ceiling <= stored,
                    "{at}: r{i} core {} > store {stored}",
                    b.core.ceiling
                );
            } else {
                assert!(
                    b.core.ceiling <= b.core.posted,
                    "{at}: r{i} has headroom unrecorded"
                );
            }
        }
        exposure += used;
    }
    assert!(
        record.ceilings() <= i128::from(max_balance),
        "{at}: ceilings {record:?}"
    );
    assert!(
        exposure <= i128::from(max_balance),
        "{at}: exposure {exposure}"
    );
}

#[test]
fn boxes_share_a_limit_under_random_traffic_outages_and_a_crash() {
    for seed in 1..=30u64 {
        let mut rng = Rng(seed);
        let max_balance = [100u64, 1000, 7, 100_000][(seed % 4) as usize];
        let mut store = MemStore::default();
        let mut boxes: Vec<TestBox> = (0..3)
            .map(|i| TestBox {
                agent: agent(&format!("r{i}"), max_balance),
                core: FakeCore::default(),
                alive: true,
            })
            .collect();
        let mut fulfilled = 0i128;
        for step in 0..3000u64 {
            let now = step * 10;
            let at = format!("seed {seed} step {step}");
            store.down = (step / 300) % 4 == 3; // a quarter of the time unreachable
            let i = rng.below(3) as usize;
            let b = &mut boxes[i];
            if !b.alive {
                if rng.below(50) == 0 {
                    // Restarted: holds gone, posted recovered from its own ledger, a new agent.
                    b.core = FakeCore {
                        posted: b.core.posted,
                        ceiling: b.core.posted,
                        ..FakeCore::default()
                    };
                    b.agent = agent(&format!("r{i}"), max_balance);
                    b.alive = true;
                }
                continue;
            }
            match rng.below(10) {
                0..=3 => {
                    let amount = i128::from(1 + rng.below(max_balance.div_ceil(10)));
                    b.core.hold(amount);
                }
                4 | 5 if !b.core.holds.is_empty() => {
                    let h = b
                        .core
                        .holds
                        .swap_remove(rng.below(b.core.holds.len() as u64) as usize);
                    b.core.posted += h;
                    fulfilled += h;
                }
                6 if !b.core.holds.is_empty() => {
                    b.core.holds.pop();
                }
                7 if rng.below(20) == 0 => {
                    // The peer settles part of what it owes through this box.
                    let settle = b.core.posted.min(i128::from(max_balance / 4)).max(0);
                    b.core.posted -= settle;
                    fulfilled -= settle;
                }
                8 if rng.below(200) == 0 => {
                    b.alive = false; // kill -9: its entry stays in the store
                    b.core.holds.clear();
                    continue;
                }
                _ => {}
            }
            b.step(now, &mut store);
            check(&boxes, &store, max_balance, &at);
        }
        // Every box back, traffic over, store up: the posted balances published add up.
        store.down = false;
        for b in &mut boxes {
            if !b.alive {
                b.core = FakeCore {
                    posted: b.core.posted,
                    ceiling: b.core.posted,
                    ..FakeCore::default()
                };
                b.alive = true;
            }
            b.core.holds.clear();
        }
        for step in 0..200u64 {
            for b in &mut boxes {
                b.step(40_000 + step * 10, &mut store);
            }
        }
        let record = record(&store);
        assert_eq!(record.posted(), fulfilled, "seed {seed}: {record:?}");
        check(&boxes, &store, max_balance, &format!("seed {seed} end"));
        // Idle: each box keeps at most a quarter chunk of headroom.
        for (i, b) in boxes.iter().enumerate() {
            let spare = record.boxes[&format!("r{i}")].ceiling - b.core.posted;
            assert!(
                spare <= i128::from(max_balance / 8 / 4).max(1),
                "seed {seed}: r{i} keeps {spare}"
            );
        }
    }
}

#[test]
fn a_box_cut_off_from_the_store_spends_what_it_holds_then_refuses() {
    let mut store = MemStore::default();
    let mut b = TestBox {
        agent: agent("r0", 800),
        core: FakeCore::default(),
        alive: true,
    };
    b.step(0, &mut store); // reconcile
    assert_eq!(record(&store).boxes["r0"].ceiling, 0);
    b.core.refused = 1; // traffic arrives: demand
    b.step(10, &mut store);
    b.step(20, &mut store);
    assert_eq!(b.core.ceiling, 100, "a chunk of max_balance / 8");
    store.down = true;
    let mut held = 0;
    for step in 0..1000u64 {
        if b.core.hold(1) {
            held += 1;
            let h = b.core.holds.pop().unwrap();
            b.core.posted += h;
        }
        b.step(30 + step * 10, &mut store);
    }
    assert_eq!(held, 100, "exactly what it held before the store went away");
    assert_eq!(b.core.ceiling, 100, "never more without the store");
    assert!(b.agent.counters().store_errors > 0);
    store.down = false;
    for step in 0..5u64 {
        b.core.hold(1);
        b.step(20_000 + step * 300, &mut store);
    }
    assert!(b.core.ceiling > 100, "takes again once the store is back");
}

#[test]
fn a_restarted_box_takes_back_its_own_entry_and_no_more() {
    let mut store = MemStore::default();
    let mut r0 = TestBox {
        agent: agent("r0", 1000),
        core: FakeCore::default(),
        alive: true,
    };
    r0.step(0, &mut store);
    r0.core.refused = 1;
    r0.step(10, &mut store);
    r0.step(20, &mut store);
    assert!(r0.core.hold(100));
    r0.core.posted += r0.core.holds.pop().unwrap();
    assert!(r0.core.hold(20)); // in flight when killed
    r0.step(30, &mut store);
    let before = record(&store).boxes["r0"].ceiling;
    assert!(before >= 120, "covers posted and the hold: {before}");
    // kill -9; restart from its ledger: posted 100, no holds.
    let mut r0 = TestBox {
        agent: agent("r0", 1000),
        core: FakeCore {
            posted: 100,
            ceiling: 100,
            ..FakeCore::default()
        },
        alive: true,
    };
    r0.step(1000, &mut store);
    let entry = &record(&store).boxes["r0"];
    assert_eq!(entry.ceiling, before, "its own entry, not a second share");
    assert_eq!(record(&store).boxes.len(), 1);
    for step in 1..200u64 {
        r0.step(1000 + step * 10, &mut store);
    }
    let entry = &record(&store).boxes["r0"];
    assert_eq!(entry.posted, 100);
    assert!(
        entry.ceiling <= 100 + 125 / 4,
        "idle: headroom given back: {entry:?}"
    );
    assert!(entry.ceiling < before);
}

#[test]
fn a_box_takes_no_more_than_the_others_leave() {
    let mut store = MemStore::default();
    let mut boxes: Vec<TestBox> = (0..2)
        .map(|i| TestBox {
            agent: agent(&format!("r{i}"), 80),
            core: FakeCore::default(),
            alive: true,
        })
        .collect();
    let mut accepted = 0;
    for step in 0..2000u64 {
        for b in &mut boxes {
            if b.core.hold(1) {
                b.core.posted += b.core.holds.pop().unwrap();
                accepted += 1;
            }
            b.step(step * 10, &mut store);
        }
        check(&boxes, &store, 80, &format!("step {step}"));
    }
    assert_eq!(accepted, 80, "both boxes together took exactly the limit");
    assert!(boxes[0].core.posted > 0 && boxes[1].core.posted > 0);
    assert!(boxes[0].agent.counters().starved > 0);
}

#[test]
fn two_routers_with_one_box_id_are_found_out_and_the_first_stops_taking() {
    let mut store = MemStore::default();
    let mut first = TestBox {
        agent: agent("r0", 1000),
        core: FakeCore::default(),
        alive: true,
    };
    first.step(0, &mut store);
    first.core.refused = 1;
    first.step(10, &mut store);
    first.step(20, &mut store);
    assert!(first.core.ceiling > 0);
    // A second process configured with the same box_id starts and reconciles.
    let mut second = TestBox {
        agent: agent("r0", 1000),
        core: FakeCore::default(),
        alive: true,
    };
    second.step(30, &mut store);
    // The first one's next write finds the other's instance in its entry.
    for step in 0..10u64 {
        if first.core.hold(1) {
            first.core.posted += first.core.holds.pop().unwrap();
        }
        first.step(200 + step * 150, &mut store);
    }
    let fenced = first.agent.fenced().expect("fenced").to_owned();
    assert!(fenced.contains("box_id \"r0\""), "{fenced}");
    assert_eq!(
        first.core.ceiling, first.core.posted,
        "down to what is in use"
    );
    assert!(!first.core.hold(1), "and nothing more");
}

#[test]
fn a_release_while_running_brings_the_core_down_and_reconciles() {
    let mut store = MemStore::default();
    let mut b = TestBox {
        agent: agent("r0", 1000),
        core: FakeCore::default(),
        alive: true,
    };
    b.step(0, &mut store);
    b.core.refused = 1;
    b.step(10, &mut store);
    b.step(20, &mut store);
    assert!(b.core.hold(100));
    b.core.posted += b.core.holds.pop().unwrap();
    b.step(30, &mut store);
    // An operator releases r0 (by mistake: it runs) from another router's admin API.
    let mut other = MemStoreHandle(&mut store);
    super::super::release(&mut other, "/t", "alice", "r0", "r1", "mistake").unwrap();
    let released = record(&store).boxes["r0"].ceiling;
    // Broken by the operator at once (the core holds more than the store now says); the
    // box comes down and reconciles within a few steps, and holds from then on.
    for step in 0..20u64 {
        b.step(1000 + step * 250, &mut store);
        if step >= 4 {
            check(
                std::slice::from_ref(&b),
                &store,
                1000,
                &format!("step {step}"),
            );
        }
    }
    let entry = &record(&store).boxes["r0"];
    assert!(entry.released.is_none(), "reconciled again: {entry:?}");
    assert!(b.core.ceiling <= entry.ceiling);
    assert!(released <= entry.ceiling);
}

/// The store seen through `&mut`, for `release`.
struct MemStoreHandle<'a>(&'a mut MemStore);

impl Store for MemStoreHandle<'_> {
    fn read(&mut self, key: &str) -> Result<(Option<Record>, i64), String> {
        self.0.read(key)
    }

    fn write(&mut self, key: &str, record: &Record, revision: i64) -> Result<bool, String> {
        self.0.write(key, record, revision)
    }
}
