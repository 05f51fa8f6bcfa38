//! Deterministic simulation of the forwarding engine: a seeded RNG, a virtual clock, several
//! peers with different assets and limits, random delays, rejects, wrong fulfillments, garbage
//! replies, late replies, expiries, link flaps and table-full bursts; on one core or several
//! (balance leases travel between cores with random delays).
//!
//! An auditor keeps its own model and checks after every step:
//! - every Prepare gets exactly one answer, and at quiescence every Prepare has one;
//! - a local Reject has the code the engine's check order (ARCHITECTURE.md, the path of a
//!   Prepare) gives (an independent oracle);
//! - a forwarded Prepare carries floor(amount × rate) and the expiry
//!   min(in − window, now + max_hold);
//! - a Fulfill is credited only if it hashes to the condition and came before the outgoing
//!   expiry, and then on both sides (conservation: posted moves by exactly the fulfilled
//!   amounts);
//! - holds equal the amounts in flight, and return to zero at quiescence;
//! - no peer's posted balance plus holds ever passes its maximum balance.
//!
//! A failing seed prints itself; rerun it alone with `ENGINE_SIM_SEED=<seed>`.
//! `ENGINE_SIM_SEEDS=<n>` sets how many seeds run (default 2000).
//!
//! Over 800 lines: the simulated world, its oracle and its auditor belong together; the
//! oracle is deliberately written apart from the engine, not shared with it.

use ilp_router::engine::rate::Decimal;
use ilp_router::engine::route::RouteTable;
use ilp_router::engine::{
    CoreId, Decision, Engine, EngineConfig, LeaseKind, LeaseMessage, PeerConfig, PeerId,
    RejectReason, Reply, SlotId, PEER_PROTOCOL_CONDITION,
};
use ilp_router::wire::{Address, ErrorCode, FulfillRepr, Prepare, PrepareRepr, RejectRepr};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};

const START: i64 = 1_900_000_000_000;
const WINDOW: i64 = 1000;
const MAX_HOLD: i64 = 30_000;
const TABLE: usize = 48;

/// splitmix64: small, seedable, good enough to drive a simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct SimPeer {
    name: &'static str,
    code: &'static str,
    scale: u8,
    max_balance: u64,
    max_packet: u64,
}

const PEERS: [SimPeer; 6] = [
    SimPeer {
        name: "alice",
        code: "USD",
        scale: 9,
        max_balance: 50_000_000_000,
        max_packet: 2_000_000_000,
    },
    SimPeer {
        name: "bob",
        code: "USD",
        scale: 6,
        max_balance: 50_000_000,
        max_packet: 2_000_000,
    },
    SimPeer {
        name: "carol",
        code: "EUR",
        scale: 2,
        max_balance: 5_000_000,
        max_packet: 200_000,
    },
    SimPeer {
        name: "dave",
        code: "JPY",
        scale: 0,
        max_balance: 10_000_000,
        max_packet: 1_000_000,
    },
    SimPeer {
        name: "erin",
        code: "USD",
        scale: 9,
        max_balance: 3_000,
        max_packet: 2_000,
    },
    SimPeer {
        name: "frank",
        code: "XYZ",
        scale: 3,
        max_balance: 1_000_000,
        max_packet: 1_000_000,
    },
];

/// Prices as num/den, exact; XYZ has none (T00).
fn price(code: &str) -> Option<(u128, u128)> {
    match code {
        "USD" => Some((1, 1)),
        "EUR" => Some((108, 100)),
        "JPY" => Some((67, 10_000)),
        _ => None,
    }
}

const DEFAULT_ROUTE: usize = 1;

fn route_of(destination: &[u8]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, p) in PEERS.iter().enumerate() {
        let prefix = format!("g.{}", p.name);
        let d = destination;
        let hit = d.starts_with(prefix.as_bytes())
            && (d.len() == prefix.len() || d[prefix.len()] == b'.');
        if hit && best.is_none_or(|(len, _)| prefix.len() > len) {
            best = Some((prefix.len(), i));
        }
    }
    best.map(|(_, i)| i)
        .or_else(|| destination.starts_with(b"g.").then_some(DEFAULT_ROUTE))
}

/// floor(amount × rate), or the reject the engine gives.
fn convert(amount: u64, from: usize, to: usize) -> Result<u64, ErrorCode> {
    // The same asset code needs no price: only the scales (and the spread) apply.
    let same = PEERS[from].code == PEERS[to].code;
    let prices = if same {
        (Some((1, 1)), Some((1, 1)))
    } else {
        (price(PEERS[from].code), price(PEERS[to].code))
    };
    let (Some((pin_n, pin_d)), Some((pout_n, pout_d))) = prices else {
        return Err(ErrorCode::T00_INTERNAL_ERROR);
    };
    let (s_in, s_out) = (PEERS[from].scale as u32, PEERS[to].scale as u32);
    let mut num = u128::from(amount) * pin_n * pout_d;
    let mut den = pin_d * pout_n;
    if s_out >= s_in {
        num *= 10u128.pow(s_out - s_in);
    } else {
        den *= 10u128.pow(s_in - s_out);
    }
    let out = num / den;
    if amount > 0 && out == 0 {
        return Err(ErrorCode::R01_INSUFFICIENT_SOURCE_AMOUNT);
    }
    u64::try_from(out).map_err(|_| ErrorCode::F08_AMOUNT_TOO_LARGE)
}

fn engine_config(core: usize, cores: usize) -> EngineConfig {
    let routes: Vec<(String, PeerId)> = PEERS
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("g.{}", p.name), PeerId(i as u16)))
        .collect();
    EngineConfig {
        address: b"g.router".to_vec(),
        peers: PEERS
            .iter()
            .enumerate()
            .map(|(i, p)| PeerConfig {
                asset_code: p.code.into(),
                asset_scale: p.scale,
                max_packet_amount: p.max_packet,
                max_balance: p.max_balance,
                home: CoreId((i % cores) as u16),
                lease_chunk: p.max_balance / 8,
                posted: 0,
                shared_limit: false,
                packets_per_second: 0,
                amount_per_second: 0,
                ildcp_segment: None,
            })
            .collect(),
        routes: RouteTable::build(b"g.router", routes, Some(PeerId(DEFAULT_ROUTE as u16))).unwrap(),
        groups: Vec::new(),
        prices: vec![
            ("USD".into(), Decimal::parse("1").unwrap()),
            ("EUR".into(), Decimal::parse("1.08").unwrap()),
            ("JPY".into(), Decimal::parse("0.0067").unwrap()),
        ],
        spread: Decimal::ZERO,
        min_message_window_ms: WINDOW as u64,
        max_hold_time_ms: MAX_HOLD as u64,
        pending_max: TABLE,
        pending_per_peer_max: TABLE,
        tick_ms: 5,
        core: CoreId(core as u16),
        cores,
    }
}

fn fulfillment_of(id: u64) -> [u8; 32] {
    Sha256::digest(id.to_be_bytes()).into()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    Right,
    Wrong,
    Reject,
    Garbage,
    Silence,
}

/// A Prepare the engine forwarded and that has not been answered yet.
struct Flight {
    core: usize,
    slot: SlotId,
    from: usize,
    to: usize,
    amount_in: u64,
    amount_out: u64,
    expires_out: i64,
    /// As forwarded (a mutated packet may carry another condition than the sim meant).
    condition: [u8; 32],
}

type Expected = Result<(usize, u64, i64), ErrorCode>;

#[derive(Debug, Clone, Copy)]
struct Waiting {
    core: usize,
    from: usize,
    amount_in: u64,
    expected: Expected,
}

struct Sim {
    seed: u64,
    rng: Rng,
    now: i64,
    /// When `tick` last ran.
    last_tick: i64,
    engines: Vec<Engine>,
    links_up: Vec<bool>,
    lease_mail: Vec<(i64, LeaseMessage)>,
    /// Prepares whose hold waits for headroom from another core: id → (core, from, amount
    /// in, what the oracle expected).
    waits: HashMap<u64, Waiting>,
    /// (due, id, answer) of next-hop replies still to be delivered.
    replies: Vec<(i64, u64, Answer)>,
    flights: HashMap<u64, Flight>,
    /// Slots of Prepares that expired, for delivering their late replies.
    expired_slots: HashMap<u64, (usize, SlotId)>,
    answered: HashSet<u64>,
    next_id: u64,
    /// The auditor's balances: posted and held, per peer.
    posted: Vec<i128>,
    held: Vec<i128>,
    stats: BTreeMap<&'static str, u64>,
}

impl Sim {
    fn new(seed: u64, cores: usize) -> Sim {
        let mut engines: Vec<Engine> = (0..cores)
            .map(|c| Engine::new(engine_config(c, cores), START))
            .collect();
        for e in &mut engines {
            for p in 0..PEERS.len() {
                e.set_link_up(PeerId(p as u16), true);
            }
        }
        let mut sim = Sim {
            seed,
            rng: Rng(seed),
            now: START,
            last_tick: START,
            engines,
            links_up: vec![true; PEERS.len()],
            lease_mail: Vec::new(),
            waits: HashMap::new(),
            replies: Vec::new(),
            flights: HashMap::new(),
            expired_slots: HashMap::new(),
            answered: HashSet::new(),
            next_id: 0,
            posted: vec![0; PEERS.len()],
            held: vec![0; PEERS.len()],
            stats: BTreeMap::new(),
        };
        sim.collect_lease_mail();
        sim
    }

    fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_default() += 1;
    }

    fn answer(&mut self, id: u64) {
        assert!(
            self.answered.insert(id),
            "seed {}: Prepare {id} answered twice",
            self.seed
        );
    }

    fn collect_lease_mail(&mut self) {
        for e in &mut self.engines {
            while let Some(m) = e.poll_lease() {
                let delay = self.rng.below(30) as i64;
                self.lease_mail.push((self.now + delay, m));
            }
        }
    }

    /// A random Prepare: mostly routable, sometimes bad in one way or another.
    fn make_prepare(&mut self, id: u64) -> (Vec<u8>, bool) {
        let to = self.rng.below(PEERS.len() as u64) as usize;
        let destination = match self.rng.below(40) {
            0 => "private.nowhere".to_string(),
            1 => "peer.config".to_string(),
            2 => "test.bob".to_string(),
            3 => "g.router".to_string(),
            4 => "g.unknown.x".to_string(),
            5 => "self.me".to_string(),
            _ => format!("g.{}.{}", PEERS[to].name, self.rng.below(1000)),
        };
        let amount = match self.rng.below(10) {
            0 => 0,
            1 => self.rng.below(10),
            2 => u64::MAX - self.rng.below(1000),
            _ => self.rng.below(3_000_000_000),
        };
        let expires_at = match self.rng.below(20) {
            0 => self.now - self.rng.below(100) as i64,
            1 => self.now + 1500,
            _ => self.now + 2000 + self.rng.below(40_000) as i64,
        };
        let condition: [u8; 32] = if destination == "peer.config" && self.rng.chance(50) {
            PEER_PROTOCOL_CONDITION
        } else {
            Sha256::digest(fulfillment_of(id)).into()
        };
        let data = id.to_be_bytes();
        let repr = PrepareRepr {
            amount,
            expires_at,
            execution_condition: &condition,
            destination: Address::new_checked(destination.as_bytes()).unwrap(),
            data: &data,
        };
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(&mut bytes);
        let garbage = self.rng.chance(3);
        if garbage {
            let at = 2 + self.rng.below(bytes.len() as u64 - 2) as usize;
            bytes[at] = 0xff;
            if self.rng.chance(50) {
                bytes.truncate(at);
            }
        }
        (bytes, garbage)
    }

    /// The spec's answer for a Prepare, in check order; `Ok(to)` means forward.
    fn oracle(&self, packet: &[u8], from: usize, core: usize) -> Expected {
        self.oracle_with(packet, from, core, true)
    }

    /// The oracle, optionally without the balance check (for a hold that waits: its end
    /// depends on the holds resolved meanwhile).
    fn oracle_with(&self, packet: &[u8], from: usize, core: usize, balance: bool) -> Expected {
        let Ok(p) = Prepare::new_checked(packet) else {
            return Err(ErrorCode::F01_INVALID_PACKET);
        };
        if p.expires_at() <= self.now {
            return Err(ErrorCode::R02_INSUFFICIENT_TIMEOUT);
        }
        let d = p.destination().as_bytes();
        if d == b"peer.config" && *p.execution_condition() == PEER_PROTOCOL_CONDITION {
            // ILDCP is answered to children only (RFC 31); the simulation has none.
            return Err(ErrorCode::F00_BAD_REQUEST);
        }
        if d.starts_with(b"peer.") {
            return Err(if *p.execution_condition() == PEER_PROTOCOL_CONDITION {
                ErrorCode::F02_UNREACHABLE
            } else {
                ErrorCode::F01_INVALID_PACKET
            });
        }
        if d.starts_with(b"self.") || d == b"g.router" || d.starts_with(b"test.") {
            return Err(ErrorCode::F02_UNREACHABLE);
        }
        if p.amount() > PEERS[from].max_packet {
            return Err(ErrorCode::F08_AMOUNT_TOO_LARGE);
        }
        let to = route_of(d).ok_or(ErrorCode::F02_UNREACHABLE)?;
        if !self.links_up[to] {
            return Err(ErrorCode::T01_PEER_UNREACHABLE);
        }
        let out = convert(p.amount(), from, to)?;
        let expires_out = (p.expires_at() - WINDOW).min(self.now + MAX_HOLD);
        if expires_out - self.now < WINDOW {
            return Err(ErrorCode::R02_INSUFFICIENT_TIMEOUT);
        }
        if self.engines[core].pending().len() == TABLE {
            return Err(ErrorCode::T03_CONNECTOR_BUSY);
        }
        let a = i128::from(p.amount());
        if balance
            && a > 0
            && self.posted[from] + self.held[from] + a > i128::from(PEERS[from].max_balance)
        {
            return Err(ErrorCode::T04_INSUFFICIENT_LIQUIDITY);
        }
        Ok((to, out, expires_out))
    }

    fn send_prepare(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let from = self.rng.below(PEERS.len() as u64) as usize;
        let core = self.rng.below(self.engines.len() as u64) as usize;
        let (mut packet, _garbage) = self.make_prepare(id);
        let expected = self.oracle(&packet, from, core);
        let unlimited = self.oracle_with(&packet, from, core, false);
        let amount_in = Prepare::new_checked(&packet[..])
            .map(|p| p.amount())
            .unwrap_or(0);
        let decision = self.engines[core].handle_prepare(
            self.now,
            PeerId(from as u16),
            u128::from(id),
            &mut packet,
        );
        let seed = self.seed;
        match decision {
            Decision::Reject(reason) => {
                self.answer(id);
                self.count("local reject");
                let code = reason.code();
                // With several cores, headroom leased out to (or missing on) a core can refuse a
                // hold the whole peer still has room for: T04 too.
                let leasing = self.engines.len() > 1;
                match expected {
                    Err(want) => assert_eq!(
                        code, want,
                        "seed {seed}: Prepare {id} rejected with the wrong code"
                    ),
                    Ok(_) if leasing && code == ErrorCode::T04_INSUFFICIENT_LIQUIDITY => {
                        self.count("T04 for want of a lease")
                    }
                    Ok(_) => {
                        panic!("seed {seed}: Prepare {id} should have been forwarded, got {code}")
                    }
                }
            }
            Decision::Forward { to, slot, len, .. } => {
                let packet = packet[..len].to_vec();
                self.forwarded(id, from, core, amount_in, expected, to, slot, &packet);
            }
            Decision::PeerConfig => panic!("seed {seed}: the simulation has no children"),
            Decision::RouteControl { .. } => panic!("seed {seed}: the simulation sends no CCP"),
            Decision::Wait { .. } => {
                // The oracle knows the peer's whole balance; a waiting hold may still end T04.
                if let Err(code) = expected {
                    assert_eq!(
                        code,
                        ErrorCode::T04_INSUFFICIENT_LIQUIDITY,
                        "seed {seed}: Prepare {id} waits but the spec says {code}"
                    );
                }
                self.count("hold waited");
                let waiting = Waiting {
                    core,
                    from,
                    amount_in,
                    expected: unlimited,
                };
                self.waits.insert(id, waiting);
            }
        }
    }

    /// A forwarded Prepare (at once, or after its hold waited): check it against the oracle,
    /// put it in flight and schedule its answer.
    #[allow(clippy::too_many_arguments)]
    fn forwarded(
        &mut self,
        id: u64,
        from: usize,
        core: usize,
        amount_in: u64,
        expected: Expected,
        to: PeerId,
        slot: SlotId,
        packet: &[u8],
    ) {
        let seed = self.seed;
        let Ok((want_to, want_amount, want_expiry)) = expected else {
            panic!("seed {seed}: Prepare {id} forwarded but the spec says {expected:?}");
        };
        assert_eq!(
            to.index(),
            want_to,
            "seed {seed}: Prepare {id} routed wrong"
        );
        let out = Prepare::new_checked(packet).expect("forwarded packet decodes");
        assert_eq!(
            out.amount(),
            want_amount,
            "seed {seed}: Prepare {id} converted wrong"
        );
        assert_eq!(
            out.expires_at(),
            want_expiry,
            "seed {seed}: Prepare {id} expiry wrong"
        );
        let condition = *out.execution_condition();
        self.held[from] += i128::from(amount_in);
        let flight = Flight {
            core,
            slot,
            from,
            to: want_to,
            amount_in,
            amount_out: want_amount,
            expires_out: want_expiry,
            condition,
        };
        self.flights.insert(id, flight);
        self.count("forwarded");
        let answer = match self.rng.below(100) {
            0..=64 => Answer::Right,
            65..=69 => Answer::Wrong,
            70..=84 => Answer::Reject,
            85..=89 => Answer::Garbage,
            _ => Answer::Silence,
        };
        if answer != Answer::Silence {
            // Mostly in time, sometimes around or past the deadline.
            let room = (want_expiry - self.now) as u64;
            let delay = if self.rng.chance(85) {
                self.rng.below(room)
            } else {
                room - 5 + self.rng.below(20)
            };
            self.replies.push((self.now + delay as i64, id, answer));
        }
    }

    /// Prepares whose waiting holds ended: forwarded now, or T04.
    fn collect_ready(&mut self) {
        let seed = self.seed;
        for core in 0..self.engines.len() {
            let mut packet = Vec::new();
            while let Some(ready) = self.engines[core].poll_ready(&mut packet) {
                let id = ready.tag as u64;
                let waiting = self
                    .waits
                    .remove(&id)
                    .unwrap_or_else(|| panic!("seed {seed}: {id} ready but never waited"));
                assert_eq!(waiting.core, core, "seed {seed}");
                match ready.decision {
                    Decision::Forward { to, slot, len, .. } => {
                        let (from, amount_in, expected) =
                            (waiting.from, waiting.amount_in, waiting.expected);
                        self.forwarded(
                            id,
                            from,
                            core,
                            amount_in,
                            expected,
                            to,
                            slot,
                            &packet[..len],
                        );
                        self.count("forwarded after waiting");
                    }
                    Decision::Reject(reason) => {
                        assert_eq!(reason, RejectReason::InsufficientLiquidity, "seed {seed}");
                        self.answer(id);
                        self.count("T04 after waiting");
                    }
                    Decision::Wait { .. }
                    | Decision::PeerConfig
                    | Decision::RouteControl { .. } => {
                        panic!("seed {seed}: poll_ready said wait")
                    }
                }
            }
        }
    }

    fn deliver_reply(&mut self, id: u64, answer: Answer) {
        let seed = self.seed;
        let Some(flight) = self.flights.get(&id) else {
            panic!("seed {seed}: reply for Prepare {id}, which is not in flight");
        };
        let (core, slot, from, to) = (flight.core, flight.slot, flight.from, flight.to);
        let condition = flight.condition;
        let mut answer = answer;
        let bytes = match answer {
            Answer::Right | Answer::Wrong => {
                let f = if answer == Answer::Right {
                    fulfillment_of(id)
                } else {
                    fulfillment_of(id + 1)
                };
                let hash: [u8; 32] = Sha256::digest(f).into();
                answer = if hash == condition {
                    Answer::Right
                } else {
                    Answer::Wrong
                };
                let repr = FulfillRepr {
                    fulfillment: &f,
                    data: b"ok",
                };
                let mut b = vec![0u8; repr.buffer_len()];
                repr.emit(&mut b);
                b
            }
            Answer::Reject => {
                let repr = RejectRepr {
                    code: ErrorCode::F99_APPLICATION_ERROR,
                    triggered_by: Some(Address::new_checked(b"g.somebody").unwrap()),
                    message: b"nope",
                    data: &[],
                };
                let mut b = vec![0u8; repr.buffer_len()];
                repr.emit(&mut b);
                b
            }
            Answer::Garbage => vec![0x0d, 0x40, 1, 2, 3],
            Answer::Silence => unreachable!(),
        };
        let in_time = self.now < flight.expires_out;
        let reply = self.engines[core].handle_reply(self.now, slot, &bytes);
        let flight = self.flights.remove(&id).expect("present");
        match reply {
            Reply::Drop => panic!("seed {seed}: reply for unanswered Prepare {id} dropped"),
            Reply::Fulfill { to: back, tag, len } => {
                assert_eq!(
                    (back.index(), tag, len),
                    (from, u128::from(id), bytes.len()),
                    "seed {seed}"
                );
                assert!(
                    answer == Answer::Right && in_time,
                    "seed {seed}: Prepare {id} credited wrongly"
                );
                self.held[from] -= i128::from(flight.amount_in);
                self.posted[from] += i128::from(flight.amount_in);
                self.posted[to] -= i128::from(flight.amount_out);
                self.count("fulfilled");
            }
            Reply::Relay { to: back, tag, len } => {
                assert_eq!(
                    (back.index(), tag, len),
                    (from, u128::from(id), bytes.len()),
                    "seed {seed}"
                );
                assert!(
                    answer == Answer::Reject && in_time,
                    "seed {seed}: Prepare {id}: relayed {answer:?}"
                );
                self.held[from] -= i128::from(flight.amount_in);
                self.count("relayed reject");
            }
            Reply::Reject {
                to: back,
                tag,
                reason,
            } => {
                assert_eq!((back.index(), tag), (from, u128::from(id)), "seed {seed}");
                let want = if !in_time {
                    RejectReason::TimedOut
                } else {
                    match answer {
                        Answer::Wrong => RejectReason::WrongCondition,
                        Answer::Garbage => RejectReason::Internal,
                        other => {
                            panic!("seed {seed}: Prepare {id}: {other:?} answered with {reason:?}")
                        }
                    }
                };
                assert_eq!(reason, want, "seed {seed}: Prepare {id}");
                self.held[from] -= i128::from(flight.amount_in);
                self.count("local reject on reply");
            }
        }
        self.answer(id);
    }

    fn tick(&mut self) {
        let seed = self.seed;
        for core in 0..self.engines.len() {
            self.engines[core].handle_timeout(self.now);
            while let Some(expired) = self.engines[core].poll_expired() {
                let id = expired.tag as u64;
                if let Some(waiting) = self.waits.remove(&id) {
                    // Expired while its hold waited: nothing was held or sent.
                    assert_eq!(expired.to.index(), waiting.from, "seed {seed}");
                    self.answer(id);
                    self.count("expired while waiting");
                    continue;
                }
                let flight = self
                    .flights
                    .remove(&id)
                    .unwrap_or_else(|| panic!("seed {seed}: unknown expiry {id}"));
                assert!(
                    flight.expires_out <= self.now,
                    "seed {seed}: Prepare {id} expired early"
                );
                // Not due at the previous call, else it would have expired then (ticks of 5 ms).
                assert!(
                    flight.expires_out > self.last_tick - 5,
                    "seed {seed}: Prepare {id} expired late"
                );
                assert_eq!(expired.to.index(), flight.from, "seed {seed}");
                self.held[flight.from] -= i128::from(flight.amount_in);
                self.expired_slots.insert(id, (core, flight.slot));
                self.answer(id);
                self.count("expired");
            }
        }
        self.last_tick = self.now;
        self.collect_lease_mail();
    }

    fn deliver_due(&mut self) {
        self.replies.sort_by_key(|&(due, id, _)| (due, id));
        let due: Vec<(i64, u64, Answer)> = self
            .replies
            .iter()
            .copied()
            .filter(|r| r.0 <= self.now)
            .collect();
        self.replies.retain(|r| r.0 > self.now);
        for (_, id, answer) in due {
            if let Some((core, slot)) = self.expired_slots.remove(&id) {
                // Its Prepare expired first: the engine must drop even a right Fulfill, and
                // credit nothing (the audit after this step checks the balances).
                let f = fulfillment_of(id);
                let repr = FulfillRepr {
                    fulfillment: &f,
                    data: b"late",
                };
                let mut bytes = vec![0u8; repr.buffer_len()];
                repr.emit(&mut bytes);
                let before = self.engines[core].counters().late_replies;
                let reply = self.engines[core].handle_reply(self.now, slot, &bytes);
                assert_eq!(
                    reply,
                    Reply::Drop,
                    "seed {}: late reply for {id} not dropped",
                    self.seed
                );
                assert_eq!(self.engines[core].counters().late_replies, before + 1);
                self.count("late reply dropped");
                continue;
            }
            self.deliver_reply(id, answer);
        }
        let mut mail = std::mem::take(&mut self.lease_mail);
        mail.sort_by_key(|&(due, m)| (due, m.to, m.from));
        for (due, message) in mail {
            if due <= self.now {
                self.engines[usize::from(message.to.0)].handle_lease(message);
            } else {
                self.lease_mail.push((due, message));
            }
        }
        self.collect_ready();
        self.collect_lease_mail();
    }

    /// The auditor's checks, after every step.
    fn audit(&self, step: usize) {
        let seed = self.seed;
        for (peer, config) in PEERS.iter().enumerate() {
            let id = PeerId(peer as u16);
            let mut holds = 0i128;
            let mut posted = 0i128;
            for e in &self.engines {
                let a = e.ledger().account(id);
                holds += a.pending_in();
                if a.home() == e.ledger().core() {
                    posted += a.posted();
                } else {
                    posted += a.posted_in_unreported() as i128 - a.posted_out_unreported() as i128;
                }
            }
            for (_, m) in &self.lease_mail {
                if let LeaseKind::Report {
                    posted_in,
                    posted_out,
                    ..
                } = m.kind
                {
                    if m.peer == id {
                        posted += posted_in as i128 - posted_out as i128;
                    }
                }
            }
            let name = config.name;
            assert_eq!(
                holds, self.held[peer],
                "seed {seed} step {step}: {name}'s holds"
            );
            assert_eq!(
                posted, self.posted[peer],
                "seed {seed} step {step}: {name}'s posted balance"
            );
            assert!(
                posted + holds <= i128::from(config.max_balance),
                "seed {seed} step {step}: {name} over its maximum balance"
            );
        }
    }

    fn run(&mut self, steps: usize) {
        for step in 0..steps {
            self.now += self.rng.below(40) as i64;
            match self.rng.below(100) {
                0..=54 => self.send_prepare(),
                55..=56 => {
                    // A burst that fills the table.
                    for _ in 0..TABLE + 5 {
                        self.send_prepare();
                    }
                }
                57 => {
                    let peer = self.rng.below(PEERS.len() as u64) as usize;
                    self.links_up[peer] = !self.links_up[peer];
                    let up = self.links_up[peer];
                    for e in &mut self.engines {
                        e.set_link_up(PeerId(peer as u16), up);
                    }
                }
                58 => self.now += self.rng.below(20_000) as i64,
                _ => {}
            }
            self.deliver_due();
            self.tick();
            self.audit(step);
        }
        // Quiescence: let every deadline pass, deliver everything, drain.
        for _ in 0..(MAX_HOLD / 500 + 4) {
            self.now += 500;
            self.deliver_due();
            self.tick();
        }
        self.now += 1000;
        self.deliver_due();
        self.tick();
        self.deliver_due();
        self.audit(steps);
        let seed = self.seed;
        assert!(
            self.flights.is_empty(),
            "seed {seed}: {} Prepares never answered",
            self.flights.len()
        );
        assert_eq!(
            self.answered.len() as u64,
            self.next_id,
            "seed {seed}: not every Prepare answered"
        );
        assert!(
            self.held.iter().all(|&h| h == 0),
            "seed {seed}: holds left at quiescence"
        );
        for e in &self.engines {
            assert!(e.pending().is_empty(), "seed {seed}: slots left in use");
        }
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(one) = std::env::var("ENGINE_SIM_SEED") {
        return vec![one.parse().expect("ENGINE_SIM_SEED is a number")];
    }
    let n: u64 = std::env::var("ENGINE_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    (1..=n).collect()
}

fn run_seed(seed: u64) -> BTreeMap<&'static str, u64> {
    let cores = 1 + (seed % 3) as usize;
    let outcome = std::panic::catch_unwind(|| {
        let mut sim = Sim::new(seed, cores);
        sim.run(300);
        sim.stats
    });
    match outcome {
        Ok(stats) => stats,
        Err(panic) => {
            eprintln!(
                "engine_sim: seed {seed} ({cores} cores) failed; rerun with ENGINE_SIM_SEED={seed}"
            );
            std::panic::resume_unwind(panic)
        }
    }
}

#[test]
fn simulation_keeps_every_invariant() {
    let mut totals: BTreeMap<&'static str, u64> = BTreeMap::new();
    let seeds = seeds();
    for &seed in &seeds {
        for (k, v) in run_seed(seed) {
            *totals.entry(k).or_default() += v;
        }
    }
    println!("engine_sim: {} seeds: {totals:?}", seeds.len());
    // The simulation must exercise every path it claims to.
    if seeds.len() >= 100 {
        for path in [
            "forwarded",
            "fulfilled",
            "relayed reject",
            "local reject",
            "local reject on reply",
            "expired",
            "late reply dropped",
            "hold waited",
            "forwarded after waiting",
        ] {
            assert!(
                totals.get(path).copied().unwrap_or(0) > 0,
                "no seed reached {path:?}"
            );
        }
    }
}
