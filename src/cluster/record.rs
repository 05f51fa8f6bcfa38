//! What the shared store holds for one shared peer: one key, `<prefix>/limits/<peer>`, whose
//! JSON value names every router (box) that serves the peer, with the ceiling it holds and
//! the posted balance it last published.
//!
//! ```json
//! {"max_balance":"10000","boxes":{
//!   "r1":{"ceiling":"2500","posted":"1800","at_ms":1764672000123,"instance":"9f3c…"},
//!   "r2":{"ceiling":"4000","posted":"3950","at_ms":1764672000456,
//!         "released":"box lost with its disk (ticket 4411)"}}}
//! ```
//!
//! Amounts are decimal strings (they are `i128`). The invariant the routers keep, each
//! changing only its own entry and only by a compare-and-put of the whole value:
//!
//! ```text
//! Σ over boxes  ceiling  <=  max_balance        (whenever a box raises its ceiling)
//! posted + held of a box  <=  its ceiling       (each box, at every instant)
//! ```
//!
//! so the peer's true balance plus every hold on every box never passes `max_balance`.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// One router's entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoxEntry {
    /// The most this box's `posted + held` may reach.
    pub ceiling: i128,
    /// Its posted balance of the peer, as last published.
    pub posted: i128,
    /// When it was last written (Unix ms).
    pub at_ms: u64,
    /// Set when an operator released the box's headroom (its reason); cleared when the box
    /// writes its entry again.
    pub released: Option<String>,
    /// The process that wrote it (random at each start): two routers given the same `box_id`
    /// find each other's writes in their entry.
    pub instance: String,
}

/// The value of one peer's key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The limit, as the last box to write saw it in its config.
    pub max_balance: u64,
    /// Every box's entry, by box id.
    pub boxes: BTreeMap<String, BoxEntry>,
}

impl Record {
    /// Parses a stored value; the error names what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Record, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let amount = |v: Option<&Value>, what: &str| -> Result<i128, String> {
            match v {
                Some(Value::String(s)) => s.parse().map_err(|_| format!("{what}: {s:?}")),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .map(i128::from)
                    .ok_or_else(|| format!("{what}: {n}")),
                None => Ok(0),
                Some(other) => Err(format!("{what}: {other}")),
            }
        };
        let max_balance = amount(value.get("max_balance"), "max_balance")?;
        let max_balance =
            u64::try_from(max_balance).map_err(|_| format!("max_balance: {max_balance}"))?;
        let mut boxes = BTreeMap::new();
        if let Some(map) = value.get("boxes") {
            let map = map.as_object().ok_or("boxes: not an object")?;
            for (id, entry) in map {
                let entry = BoxEntry {
                    ceiling: amount(entry.get("ceiling"), &format!("boxes.{id}.ceiling"))?,
                    posted: amount(entry.get("posted"), &format!("boxes.{id}.posted"))?,
                    at_ms: entry.get("at_ms").and_then(Value::as_u64).unwrap_or(0),
                    released: entry
                        .get("released")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    instance: entry
                        .get("instance")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                };
                boxes.insert(id.clone(), entry);
            }
        }
        Ok(Record { max_balance, boxes })
    }

    /// The stored value.
    pub fn to_json(&self) -> Value {
        let mut boxes = Map::new();
        for (id, entry) in &self.boxes {
            let mut e = json!({
                "ceiling": entry.ceiling.to_string(),
                "posted": entry.posted.to_string(),
                "at_ms": entry.at_ms,
            });
            if let Some(reason) = &entry.released {
                e["released"] = Value::String(reason.clone());
            }
            if !entry.instance.is_empty() {
                e["instance"] = Value::String(entry.instance.clone());
            }
            boxes.insert(id.clone(), e);
        }
        json!({ "max_balance": self.max_balance.to_string(), "boxes": boxes })
    }

    /// The stored bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_json().to_string().into_bytes()
    }

    /// The sum of every box's ceiling but `except`'s.
    pub fn ceilings_except(&self, except: &str) -> i128 {
        self.boxes
            .iter()
            .filter(|(id, _)| id.as_str() != except)
            .map(|(_, e)| e.ceiling)
            .sum()
    }

    /// The sum of every box's ceiling.
    pub fn ceilings(&self) -> i128 {
        self.boxes.values().map(|e| e.ceiling).sum()
    }

    /// The peer's balance: the sum of what every box published.
    pub fn posted(&self) -> i128 {
        self.boxes.values().map(|e| e.posted).sum()
    }
}

/// The key of `peer`'s record under `prefix`.
pub fn key(prefix: &str, peer: &str) -> String {
    format!("{prefix}/limits/{peer}")
}

/// The prefix of every record under `prefix`.
pub fn records_prefix(prefix: &str) -> String {
    format!("{prefix}/limits/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_sums() {
        let mut record = Record {
            max_balance: 10_000,
            ..Record::default()
        };
        record.boxes.insert(
            "r1".into(),
            BoxEntry {
                ceiling: 2500,
                posted: 1800,
                at_ms: 7,
                released: None,
                instance: "a1".into(),
            },
        );
        record.boxes.insert(
            "r2".into(),
            BoxEntry {
                ceiling: -40,
                posted: -50,
                at_ms: 9,
                released: Some("lost".into()),
                instance: String::new(),
            },
        );
        let back = Record::parse(&record.to_bytes()).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.ceilings(), 2460);
        assert_eq!(back.ceilings_except("r1"), -40);
        assert_eq!(back.posted(), 1750);
        assert_eq!(key("/ilp-router", "alice"), "/ilp-router/limits/alice");
    }

    #[test]
    fn a_bad_record_is_named() {
        assert!(Record::parse(b"{").unwrap_err().starts_with("not JSON"));
        let bad = br#"{"max_balance":"5","boxes":{"r1":{"ceiling":"x"}}}"#;
        assert_eq!(Record::parse(bad).unwrap_err(), "boxes.r1.ceiling: \"x\"");
        let negative = br#"{"max_balance":"-5"}"#;
        assert_eq!(Record::parse(negative).unwrap_err(), "max_balance: -5");
    }
}
