//! Several routers in front of one cluster: the credit limits of peers marked
//! `shared_limit = true` hold across every router (box) together, through an etcd cluster.
//!
//! Each box stays shared-nothing on its packet path. What it may let a shared peer owe is a
//! *ceiling* its home core checks holds against (`engine::ledger`, "Limits shared by several
//! routers"); the ceilings of every box live in one etcd key per peer ([`record`]), changed
//! only by compare-and-put transactions that keep their sum within `max_balance`. The
//! [`agent`] decides when a box takes headroom in chunks (before it runs out, so no Prepare
//! waits on etcd) and when it gives it back (idle, or far more than it uses), and publishes the
//! box's posted balance. [`etcd`] is the client. The runtime (a thread, never a core) is
//! `shard::cluster`.

pub mod agent;
pub mod etcd;
pub mod record;

use self::agent::Store;
use self::etcd::{CasOutcome, EtcdClient};
use self::record::{key, records_prefix, Record};

/// The agent's [`Store`] on etcd.
#[derive(Debug)]
pub struct EtcdStore(pub EtcdClient);

impl Store for EtcdStore {
    fn read(&mut self, key: &str) -> Result<(Option<Record>, i64), String> {
        match self.0.get(key.as_bytes()).map_err(|e| e.to_string())? {
            None => Ok((None, 0)),
            Some(kv) => {
                let record =
                    Record::parse(&kv.value).map_err(|e| format!("the record at {key}: {e}"))?;
                Ok((Some(record), kv.mod_revision))
            }
        }
    }

    fn write(&mut self, key: &str, record: &Record, revision: i64) -> Result<bool, String> {
        let outcome = (self.0)
            .compare_and_put(key.as_bytes(), &record.to_bytes(), revision)
            .map_err(|e| e.to_string())?;
        Ok(matches!(outcome, CasOutcome::Written { .. }))
    }
}

/// Every shared peer's record under `prefix`, by peer name (for `ilp-router balances
/// --etcd` and the admin API).
pub fn read_all(client: &mut EtcdClient, prefix: &str) -> Result<Vec<(String, Record)>, String> {
    let start = records_prefix(prefix);
    let kvs = client
        .range_prefix(start.as_bytes())
        .map_err(|e| e.to_string())?;
    kvs.into_iter()
        .map(|kv| {
            let name = String::from_utf8_lossy(&kv.key[start.len()..]).into_owned();
            let record =
                Record::parse(&kv.value).map_err(|e| format!("the record of {name}: {e}"))?;
            Ok((name, record))
        })
        .collect()
}

/// An operator releases what a box that is gone held for `peer`: its ceiling comes down to
/// the posted balance it last published, and `reason` is kept in its entry (and logged by
/// the caller). Refused for the box asking (`own_box`): a running box gives back on its own.
/// Returns the entry as it was.
pub fn release(
    store: &mut dyn Store,
    prefix: &str,
    peer: &str,
    box_id: &str,
    own_box: &str,
    reason: &str,
) -> Result<record::BoxEntry, String> {
    if box_id == own_box {
        return Err(format!(
            "{box_id} is this router: a running router gives its headroom back on its own"
        ));
    }
    if reason.trim().is_empty() {
        return Err("a reason is required (it is logged and kept in the store)".into());
    }
    let key = key(prefix, peer);
    for _ in 0..8 {
        let (record, revision) = store.read(&key)?;
        let Some(mut record) = record else {
            return Err(format!("no shared record for peer {peer:?} at {key}"));
        };
        let Some(entry) = record.boxes.get_mut(box_id) else {
            return Err(format!("box {box_id:?} holds nothing for peer {peer:?}"));
        };
        let before = entry.clone();
        entry.ceiling = entry.posted;
        entry.released = Some(reason.to_owned());
        if store.write(&key, &record, revision)? {
            return Ok(before);
        }
    }
    Err("the record kept changing; try again".into())
}
