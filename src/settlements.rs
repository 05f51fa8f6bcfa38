//! Settlements recorded by the operator (`POST /peers/{name}/settlements`): money that moved
//! outside the router, applied to a peer's posted balance exactly once per idempotency key.
//!
//! # Contract
//!
//! - A settlement is `{peer, amount, direction, key}`. `incoming`: the peer paid us, so it owes
//!   us less (`posted -= amount`, the §7 sign); `outgoing`: we paid the peer
//!   (`posted += amount`).
//! - With a state directory, each accepted settlement is appended to `settlements.log` (one
//!   JSON object per line) and synced **before** it is acknowledged or applied. The journal,
//!   not the ledger rows, is the durable record of settlements: the cores add them to the
//!   peer's posted balance in memory (its home core's view, which the credit checks use) but
//!   never to the rows, and at start the journal's sum per peer is added to the recovered
//!   balance. So a crash at any point applies a settlement exactly once: before the sync it
//!   was never acknowledged (a retry with the same key applies it), after it the restart
//!   replays it from the journal, and a retry is answered as a duplicate.
//! - The same key again with the same settlement is a duplicate (applied once, answered
//!   again); with a different one it is refused (409). Keys are kept for the life of the
//!   journal; at most [`KEYS_MAX`] of them.
//! - Without a state directory the keys live in memory only, like the balances.
//! - A last line torn by a crash during its write was never acknowledged and is ignored;
//!   any other line that does not parse refuses the journal (an error naming the file and
//!   the line), as the ledger files are never reset silently.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The journal's file name in the state directory.
pub const JOURNAL: &str = "settlements.log";

/// The most idempotency keys kept (past it, new settlements are refused).
pub const KEYS_MAX: usize = 1_000_000;

/// The longest idempotency key, in bytes.
pub const KEY_LEN_MAX: usize = 256;

/// Who paid whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The peer paid us: it owes us less.
    Incoming,
    /// We paid the peer.
    Outgoing,
}

/// One settlement, as journalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The idempotency key.
    pub key: String,
    /// The peer's name.
    pub peer: String,
    /// The amount, in the peer's units, as a decimal string.
    pub amount: String,
    /// Who paid whom.
    pub direction: Direction,
}

impl Settlement {
    /// What it adds to the peer's posted balance.
    pub fn delta(&self) -> Result<i128, String> {
        let amount: u64 = self.amount.parse().map_err(|_| {
            format!(
                "amount {:?} is not a whole number of units (0 to 2^64-1)",
                self.amount
            )
        })?;
        Ok(match self.direction {
            Direction::Incoming => -i128::from(amount),
            Direction::Outgoing => i128::from(amount),
        })
    }
}

/// Why a settlement was not recorded.
#[derive(Debug)]
pub enum Refused {
    /// The key was used for a different settlement.
    Conflict,
    /// [`KEYS_MAX`] keys are kept already.
    Full,
    /// The journal could not be written or synced.
    Io(io::Error),
}

/// What [`Journal::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// New: durable (with a state directory) and to be applied.
    New,
    /// The same settlement under the same key was recorded before: nothing to apply.
    Duplicate,
}

/// The settlements recorded so far, and the journal they are appended to.
#[derive(Debug)]
pub struct Journal {
    path: Option<PathBuf>,
    file: Option<File>,
    keys: HashMap<String, Settlement>,
    /// Sum of the deltas per peer name.
    sums: HashMap<String, i128>,
}

impl Journal {
    /// An empty journal in memory only (no state directory).
    pub fn in_memory() -> Journal {
        Journal {
            path: None,
            file: None,
            keys: HashMap::new(),
            sums: HashMap::new(),
        }
    }

    /// Opens (or creates) the journal in `dir` and reads what it holds.
    pub fn open(dir: &Path) -> Result<Journal, String> {
        let path = dir.join(JOURNAL);
        let mut journal = Journal::read(&path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        journal.file = Some(file);
        journal.path = Some(path);
        Ok(journal)
    }

    /// Reads the journal at `path` (empty when there is none) without opening it for writing.
    pub fn read(path: &Path) -> Result<Journal, String> {
        let mut journal = Journal::in_memory();
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(journal),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let complete = text.ends_with(b"\n");
        let lines: Vec<&[u8]> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        for (i, line) in lines.iter().enumerate() {
            let parsed = serde_json::from_slice::<Settlement>(line)
                .map_err(|e| e.to_string())
                .and_then(|s| s.delta().map(|d| (s, d)));
            match parsed {
                Ok((settlement, delta)) => {
                    *journal.sums.entry(settlement.peer.clone()).or_default() += delta;
                    journal.keys.insert(settlement.key.clone(), settlement);
                }
                // A torn last line: its write never finished, so it was never acknowledged.
                Err(_) if i + 1 == lines.len() && !complete => {}
                Err(e) => {
                    return Err(format!("{} line {}: {e}", path.display(), i + 1));
                }
            }
        }
        Ok(journal)
    }

    /// Every peer name with settlements, and their sum.
    pub fn sums(&self) -> impl Iterator<Item = (&str, i128)> {
        self.sums.iter().map(|(name, &sum)| (name.as_str(), sum))
    }

    /// The sum of the settlements of the peer `name`.
    pub fn sum(&self, name: &str) -> i128 {
        self.sums.get(name).copied().unwrap_or(0)
    }

    /// Records `settlement` (already checked: a known peer, a valid amount and key). A new
    /// one is durable when this returns (with a state directory); the caller then applies
    /// its delta.
    pub fn record(&mut self, settlement: Settlement) -> Result<Recorded, Refused> {
        if let Some(earlier) = self.keys.get(&settlement.key) {
            return match *earlier == settlement {
                true => Ok(Recorded::Duplicate),
                false => Err(Refused::Conflict),
            };
        }
        if self.keys.len() >= KEYS_MAX {
            return Err(Refused::Full);
        }
        let delta = settlement
            .delta()
            .map_err(|e| Refused::Io(io::Error::other(e)))?;
        if let Some(file) = &mut self.file {
            let mut line = serde_json::to_vec(&settlement).expect("a settlement serializes");
            line.push(b'\n');
            file.write_all(&line).map_err(Refused::Io)?;
            file.sync_data().map_err(Refused::Io)?;
        }
        *self.sums.entry(settlement.peer.clone()).or_default() += delta;
        self.keys.insert(settlement.key.clone(), settlement);
        Ok(Recorded::New)
    }

    /// Where the journal lives, if on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn settlement(key: &str, amount: &str, direction: Direction) -> Settlement {
        Settlement {
            key: key.into(),
            peer: "bob".into(),
            amount: amount.into(),
            direction,
        }
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ilp-settle-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_key_applies_once_across_a_restart_and_a_different_reuse_is_refused() {
        let dir = dir("once");
        let mut journal = Journal::open(&dir).unwrap();
        let paid = settlement("k1", "100", Direction::Incoming);
        assert_eq!(journal.record(paid.clone()).unwrap(), Recorded::New);
        assert_eq!(journal.record(paid.clone()).unwrap(), Recorded::Duplicate);
        let other = settlement("k1", "101", Direction::Incoming);
        assert!(matches!(journal.record(other), Err(Refused::Conflict)));
        let ours = settlement("k2", "30", Direction::Outgoing);
        assert_eq!(journal.record(ours).unwrap(), Recorded::New);
        assert_eq!(journal.sum("bob"), -70);
        drop(journal);
        // A restart: the sums come back from the journal, the keys too.
        let mut journal = Journal::open(&dir).unwrap();
        assert_eq!(journal.sum("bob"), -70);
        assert_eq!(journal.record(paid).unwrap(), Recorded::Duplicate);
        assert_eq!(journal.sum("bob"), -70);
        assert_eq!(journal.sum("alice"), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_damage_elsewhere_refused() {
        let dir = dir("torn");
        let path = dir.join(JOURNAL);
        let good = r#"{"key":"a","peer":"bob","amount":"5","direction":"outgoing"}"#;
        std::fs::write(&path, format!("{good}\n{{\"key\":\"b\",\"pe")).unwrap();
        let journal = Journal::read(&path).unwrap();
        assert_eq!(journal.sum("bob"), 5);
        std::fs::write(&path, format!("garbage\n{good}\n")).unwrap();
        let error = Journal::read(&path).unwrap_err();
        assert!(error.contains("line 1"), "{error}");
        std::fs::write(
            &path,
            format!("{good}\n{}\n", good.replace("\"5\"", "\"-5\"")),
        )
        .unwrap();
        assert!(Journal::read(&path).unwrap_err().contains("line 2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn amounts_are_whole_units() {
        assert_eq!(settlement("k", "7", Direction::Outgoing).delta(), Ok(7));
        assert_eq!(settlement("k", "7", Direction::Incoming).delta(), Ok(-7));
        for bad in ["", "1.5", "-1", "18446744073709551616", "1e3"] {
            assert!(
                settlement("k", bad, Direction::Incoming).delta().is_err(),
                "{bad}"
            );
        }
    }
}
