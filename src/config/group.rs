//! `[[groups]]`: backend groups, one route leading to several peers (a cluster of connectors
//! behind the router). Each entry is checked key by key; every error names `groups[i].key`.
//!
//! | key | type | default | meaning |
//! | --- | --- | --- | --- |
//! | `name` | string | required | unique among groups; routes name it with `group = "…"` |
//! | `peers` | peer names | required | 1 to 256 distinct peers, in no other group, of one asset code and scale |
//! | `policy` | `"hash"` or `"least_in_flight"` | `"hash"` | sticky by destination, or the fewest in flight on the core |
//! | `hash_segments` | integer | 0 | `hash`: hash the route's prefix and this many segments after it; 0 = the whole destination |
//! | `weights` | integers ≥ 1 | all 1 | one per peer, in the same order |
//! | `backend_in_flight_max` | integer | 0 | Prepares in flight to one backend, all cores together (each core takes its share); past it the next backend is tried; 0 = no cap |
//! | `outlier_window` | 0..=32 | 20 | answers judged per backend; 0 turns ejection off |
//! | `outlier_failure_percent` | 1..=100 | 50 | eject when more than this % of the window failed (T00/T01/R00, no answer) |
//! | `ejection_base_ms` | ms | 5000 | an ejection lasts this times the recent ejections |
//! | `ejection_max_ms` | ms | 300000 | the longest ejection |
//! | `max_ejection_percent` | 0..=100 | 50 | the most of the group ejected at once (at least one backend) |

use std::collections::HashMap;

use super::raw::RawGroup;
use super::{ConfigError, Peer};
use crate::engine::backends::OUTLIER_WINDOW_MAX;
use crate::engine::group::{Policy, BACKENDS_MAX};
use crate::engine::{GroupId, OutlierConfig, PeerId};

/// The most groups one config may have.
pub const GROUPS_MAX: usize = 4096;

/// One validated `[[groups]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its index.
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// Its backends, in file order.
    pub peers: Vec<PeerId>,
    /// One weight per backend.
    pub weights: Vec<u32>,
    /// How a backend is chosen.
    pub policy: Policy,
    /// Prepares in flight to one backend, all cores together; 0: no cap.
    pub backend_in_flight_max: u64,
    /// Passive health.
    pub outlier: OutlierConfig,
}

/// Checks every `[[groups]]` entry against the peers.
pub(super) fn check_groups(
    raw: Vec<RawGroup>,
    peers: &[Peer],
    peer_ids: &HashMap<String, PeerId>,
) -> Result<(Vec<Group>, HashMap<String, GroupId>), ConfigError> {
    if raw.len() > GROUPS_MAX {
        return Err(ConfigError::invalid(
            "groups",
            format!("{} groups, at most {GROUPS_MAX}", raw.len()),
        ));
    }
    let mut groups = Vec::with_capacity(raw.len());
    let mut ids: HashMap<String, GroupId> = HashMap::new();
    // The group of each peer already placed in one.
    let mut member: HashMap<PeerId, usize> = HashMap::new();
    for (i, group) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("groups[{i}].{k}");
        if group.name.is_empty() {
            return Err(ConfigError::invalid(key("name"), "empty; name the group"));
        }
        if ids.contains_key(&group.name) {
            return Err(ConfigError::invalid(
                key("name"),
                format!("{:?} is the name of an earlier group", group.name),
            ));
        }
        let members = check_members(&group, i, peers, peer_ids, &mut member)?;
        let weights = check_weights(&group, i, members.len())?;
        let policy = match (
            group.policy.as_deref().unwrap_or("hash"),
            group.hash_segments,
        ) {
            ("hash", segments) => Policy::Hash {
                hash_segments: u16::try_from(segments.unwrap_or(0)).map_err(|_| {
                    ConfigError::invalid(key("hash_segments"), "at most 65535 segments")
                })?,
            },
            ("least_in_flight", None) => Policy::LeastInFlight,
            ("least_in_flight", Some(_)) => {
                return Err(ConfigError::invalid(
                    key("hash_segments"),
                    "only for policy = \"hash\"; leave it out with \"least_in_flight\"",
                ))
            }
            (other, _) => {
                return Err(ConfigError::invalid(
                    key("policy"),
                    format!("{other:?}; write \"hash\" or \"least_in_flight\""),
                ))
            }
        };
        let outlier = check_outlier(&group, i)?;
        let id = GroupId(u16::try_from(i).expect("GROUPS_MAX fits u16"));
        ids.insert(group.name.clone(), id);
        groups.push(Group {
            id,
            name: group.name,
            peers: members,
            weights,
            policy,
            backend_in_flight_max: group.backend_in_flight_max.unwrap_or(0),
            outlier,
        });
    }
    Ok((groups, ids))
}

/// `groups[i].peers`: known, distinct, in no earlier group, one asset.
fn check_members(
    group: &RawGroup,
    i: usize,
    peers: &[Peer],
    peer_ids: &HashMap<String, PeerId>,
    member: &mut HashMap<PeerId, usize>,
) -> Result<Vec<PeerId>, ConfigError> {
    let key = format!("groups[{i}].peers");
    if group.peers.is_empty() {
        return Err(ConfigError::invalid(
            key,
            "empty; a group needs at least one peer",
        ));
    }
    if group.peers.len() > BACKENDS_MAX {
        return Err(ConfigError::invalid(
            key,
            format!("{} peers, at most {BACKENDS_MAX}", group.peers.len()),
        ));
    }
    let mut members = Vec::with_capacity(group.peers.len());
    for name in &group.peers {
        let Some(&id) = peer_ids.get(name) else {
            let known: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
            return Err(ConfigError::invalid(
                key,
                format!(
                    "no peer is named {name:?}; the peers are {}",
                    known.join(", ")
                ),
            ));
        };
        if members.contains(&id) {
            return Err(ConfigError::invalid(
                key,
                format!("{name:?} is listed twice"),
            ));
        }
        if let Some(&other) = member.get(&id) {
            return Err(ConfigError::invalid(
                key,
                format!("{name:?} is already in groups[{other}]; a peer may be in one group"),
            ));
        }
        let (first, this) = (
            &peers[members.first().map_or(id, |p: &PeerId| *p).index()],
            &peers[id.index()],
        );
        if (first.asset_code.as_str(), first.asset_scale)
            != (this.asset_code.as_str(), this.asset_scale)
        {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "{name:?} has asset {} at scale {}, {:?} {} at scale {}; a group's peers \
                     share one asset code and scale (a Prepare is converted once, then may \
                     move between them)",
                    this.asset_code,
                    this.asset_scale,
                    first.name,
                    first.asset_code,
                    first.asset_scale
                ),
            ));
        }
        member.insert(id, i);
        members.push(id);
    }
    Ok(members)
}

/// `groups[i].weights`: one per peer, each 1..=1000.
fn check_weights(group: &RawGroup, i: usize, members: usize) -> Result<Vec<u32>, ConfigError> {
    let key = format!("groups[{i}].weights");
    let Some(weights) = &group.weights else {
        return Ok(vec![1; members]);
    };
    if weights.len() != members {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{} weights for {members} peers; give one per peer, in the same order",
                weights.len()
            ),
        ));
    }
    weights
        .iter()
        .map(|&w| match w {
            1..=1000 => Ok(w as u32),
            _ => Err(ConfigError::invalid(
                &key,
                format!("{w}; each weight is 1 to 1000"),
            )),
        })
        .collect()
}

/// The outlier-detection keys of `groups[i]`.
fn check_outlier(group: &RawGroup, i: usize) -> Result<OutlierConfig, ConfigError> {
    let key = |k: &str| format!("groups[{i}].{k}");
    let defaults = OutlierConfig::default();
    let window = group.outlier_window.unwrap_or(u64::from(defaults.window));
    if window > u64::from(OUTLIER_WINDOW_MAX) {
        return Err(ConfigError::invalid(
            key("outlier_window"),
            format!("{window}; at most {OUTLIER_WINDOW_MAX} answers (0 turns ejection off)"),
        ));
    }
    let percent = |k: &str, value: Option<u64>, default: u32, min: u64| {
        let value = value.unwrap_or(u64::from(default));
        if (min..=100).contains(&value) {
            Ok(value as u32)
        } else {
            Err(ConfigError::invalid(
                key(k),
                format!("{value}; a percentage from {min} to 100"),
            ))
        }
    };
    let failure_percent = percent(
        "outlier_failure_percent",
        group.outlier_failure_percent,
        defaults.failure_percent,
        1,
    )?;
    let max_ejection_percent = percent(
        "max_ejection_percent",
        group.max_ejection_percent,
        defaults.max_ejection_percent,
        0,
    )?;
    let base = group.ejection_base_ms.unwrap_or(defaults.ejection_base_ms);
    let max = group.ejection_max_ms.unwrap_or(defaults.ejection_max_ms);
    const DAY_MS: u64 = 86_400_000;
    if !(1..=DAY_MS).contains(&base) {
        return Err(ConfigError::invalid(
            key("ejection_base_ms"),
            format!("{base}; 1 ms to a day"),
        ));
    }
    if !(base..=DAY_MS).contains(&max) {
        return Err(ConfigError::invalid(
            key("ejection_max_ms"),
            format!("{max}; from ejection_base_ms ({base}) to a day"),
        ));
    }
    Ok(OutlierConfig {
        window: window as u32,
        failure_percent,
        ejection_base_ms: base,
        ejection_max_ms: max,
        max_ejection_percent,
    })
}
