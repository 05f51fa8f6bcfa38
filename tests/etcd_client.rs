//! The etcd client (`ilp_router::cluster::etcd`) against a real three-member etcd cluster on
//! loopback (tests/common/etcd.rs): every call, compare-and-put under contention from two
//! threads, failover when a member dies, and an error (not a hang, not a write) when quorum
//! is lost. Skipped, saying so, where etcd is not installed (a failure under CI). Every loop
//! is bounded; nothing asserts a tight timing.

#[path = "common/etcd.rs"]
mod etcd;

use etcd::EtcdCluster;
use ilp_router::cluster::etcd::{CasOutcome, EtcdClient, EtcdError, KeyValue};
use std::time::{Duration, Instant};

/// Each attempt on one endpoint.
const TIMEOUT: Duration = Duration::from_secs(2);

fn client(urls: &[String]) -> EtcdClient {
    EtcdClient::new(urls, TIMEOUT).unwrap()
}

/// `host:port` of a URL, as [`EtcdClient::endpoint`] names it.
fn endpoint(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// Polls `check` every 50 ms until it holds; panics after `within`.
fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not after {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(client: &mut EtcdClient, key: &[u8]) -> KeyValue {
    client
        .get(key)
        .unwrap()
        .unwrap_or_else(|| panic!("{} is missing", String::from_utf8_lossy(key)))
}

#[test]
fn every_call_against_a_real_cluster() {
    let Some(cluster) = EtcdCluster::start(3, "every_call_against_a_real_cluster") else {
        return;
    };
    let mut etcd = client(&cluster.client_urls());

    // put, get.
    assert_eq!(etcd.get(b"t/a").unwrap(), None);
    let created = etcd.put(b"t/a", b"1").unwrap();
    let a = get(&mut etcd, b"t/a");
    assert_eq!(
        (a.key.as_slice(), a.value.as_slice()),
        (&b"t/a"[..], &b"1"[..])
    );
    assert_eq!((a.create_revision, a.mod_revision), (created, created));
    // An empty value (which the gateway leaves out of its JSON).
    let emptied = etcd.put(b"t/a", b"").unwrap();
    assert!(emptied > created);
    let a = get(&mut etcd, b"t/a");
    assert_eq!(a.value, b"");
    assert_eq!((a.create_revision, a.mod_revision), (created, emptied));
    // Bytes that are not UTF-8, in keys and values.
    let binary_key = b"t/\xff\x00k".to_vec();
    etcd.put(&binary_key, &[0, 1, 0xfe, 0xff]).unwrap();
    assert_eq!(get(&mut etcd, &binary_key).value, [0, 1, 0xfe, 0xff]);

    // range_prefix: only the prefix's keys, sorted; none; all.
    etcd.put(b"t/b", b"2").unwrap();
    etcd.put(b"t0", b"beside the prefix").unwrap();
    etcd.put(b"s", b"before it").unwrap();
    let keys = |kvs: Vec<KeyValue>| kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>();
    assert_eq!(
        keys(etcd.range_prefix(b"t/").unwrap()),
        [b"t/a".to_vec(), b"t/b".to_vec(), binary_key.clone()]
    );
    assert_eq!(etcd.range_prefix(b"t/b").unwrap()[0].value, b"2");
    assert_eq!(etcd.range_prefix(b"nothing/").unwrap(), []);
    assert_eq!(etcd.range_prefix(b"").unwrap().len(), 5);

    // delete, also of a key that is not there.
    etcd.delete(b"t/b").unwrap();
    assert_eq!(etcd.get(b"t/b").unwrap(), None);
    etcd.delete(b"t/b").unwrap();
    assert_eq!(etcd.range_prefix(b"t/").unwrap().len(), 2);

    // compare_and_put: create with 0, a conflict shows the current key, update with its
    // mod_revision.
    let CasOutcome::Written { revision: first } = etcd.compare_and_put(b"cas", b"one", 0).unwrap()
    else {
        panic!("creating with 0 did not write");
    };
    let stored = get(&mut etcd, b"cas");
    assert_eq!(
        (stored.value.as_slice(), stored.mod_revision),
        (&b"one"[..], first)
    );
    for stale in [0, first - 1, first + 1] {
        assert_eq!(
            etcd.compare_and_put(b"cas", b"two", stale).unwrap(),
            CasOutcome::Conflict {
                current: Some(stored.clone())
            },
            "with mod_revision {stale}"
        );
    }
    let CasOutcome::Written { revision: second } =
        etcd.compare_and_put(b"cas", b"two", first).unwrap()
    else {
        panic!("updating with the right revision did not write");
    };
    assert!(second > first);
    let stored = get(&mut etcd, b"cas");
    assert_eq!(
        (stored.value.as_slice(), stored.mod_revision),
        (&b"two"[..], second)
    );
    assert_eq!(stored.create_revision, first);
    assert_eq!(
        etcd.compare_and_put(b"never-written", b"x", 7).unwrap(),
        CasOutcome::Conflict { current: None }
    );

    // A request etcd refuses is a Status error, not a failover.
    let requests = etcd.requests();
    let refused = etcd.put(b"", b"no key").unwrap_err();
    assert!(
        matches!(refused, EtcdError::Status { status: 400, .. }),
        "{refused:?}"
    );
    assert_eq!(etcd.requests(), requests + 1);
}

/// `times` increments of the decimal counter at `key`, each a compare-and-put from the value
/// last seen, retried on conflicts (a conflict brings the current value along).
fn increment(etcd: &mut EtcdClient, key: &[u8], times: u32) -> u32 {
    let mut seen = etcd
        .get(key)
        .unwrap()
        .map(|kv| (counter(&kv.value), kv.mod_revision));
    let mut conflicts = 0;
    let mut done = 0;
    while done < times {
        assert!(conflicts < 50 * times, "{conflicts} conflicts");
        let (value, revision) = seen.unwrap_or((0, 0));
        let next = (value + 1).to_string();
        match etcd
            .compare_and_put(key, next.as_bytes(), revision)
            .unwrap()
        {
            CasOutcome::Written { revision } => {
                seen = Some((value + 1, revision));
                done += 1;
            }
            CasOutcome::Conflict { current } => {
                seen = current.map(|kv| (counter(&kv.value), kv.mod_revision));
                conflicts += 1;
            }
        }
    }
    conflicts
}

fn counter(value: &[u8]) -> u64 {
    std::str::from_utf8(value).unwrap().parse().unwrap()
}

#[test]
fn concurrent_compare_and_put_loses_no_increment() {
    let Some(cluster) = EtcdCluster::start(3, "concurrent_compare_and_put_loses_no_increment")
    else {
        return;
    };
    let urls = cluster.client_urls();
    // The two writers start at different members.
    let threads: Vec<_> = [0, 1]
        .into_iter()
        .map(|first| {
            let mut urls = urls.clone();
            urls.rotate_left(first);
            std::thread::spawn(move || increment(&mut client(&urls), b"counter", 200))
        })
        .collect();
    let conflicts: Vec<u32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    eprintln!("conflicts per writer: {conflicts:?}");
    let mut etcd = client(&urls);
    let stored = get(&mut etcd, b"counter");
    assert_eq!(counter(&stored.value), 400);
}

#[test]
fn failover_and_quorum_loss() {
    let Some(mut cluster) = EtcdCluster::start(3, "failover_and_quorum_loss") else {
        return;
    };
    let urls = cluster.client_urls();
    let mut etcd = client(&urls);
    etcd.put(b"f/k", b"v0").unwrap();
    assert_eq!(etcd.endpoint(), endpoint(&urls[0]));

    // The client's first endpoint dies: calls go to the next one.
    cluster.stop_member(0);
    wait_until("members 1 and 2 healthy", Duration::from_secs(10), || {
        cluster.healthy(1) && cluster.healthy(2)
    });
    let requests = etcd.requests();
    let stored = get(&mut etcd, b"f/k");
    assert_eq!(stored.value, b"v0");
    assert_ne!(etcd.endpoint(), endpoint(&urls[0]));
    assert!(etcd.requests() >= requests + 2, "member 0 was not tried");
    let CasOutcome::Written { revision } = etcd
        .compare_and_put(b"f/k", b"v1", stored.mod_revision)
        .unwrap()
    else {
        panic!("compare_and_put after failover did not write");
    };
    etcd.put(b"f/other", b"x").unwrap();

    // A second member dies: no quorum. Once member 2 knows it (no leader), a write fails, in
    // bounded time, and is not applied. (Sent earlier, while member 2 may still be a leader
    // that has not yet noticed, the write would time out all the same, yet sit in its log and
    // be committed once quorum returns: etcd 3.4 does that, so a timed-out write is "unknown",
    // not "not written".)
    cluster.stop_member(1);
    wait_until("member 2 without a leader", Duration::from_secs(10), || {
        !cluster.healthy(2)
    });
    let mut short = EtcdClient::new(&urls, Duration::from_secs(1)).unwrap();
    let started = Instant::now();
    let lost = short
        .compare_and_put(b"f/k", b"lost", revision)
        .unwrap_err();
    let took = started.elapsed();
    eprintln!("without quorum, compare_and_put failed after {took:?}: {lost}");
    assert!(matches!(lost, EtcdError::Unreachable(_)), "{lost:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let started = Instant::now();
    let read = short.get(b"f/k").unwrap_err();
    eprintln!(
        "without quorum, get failed after {:?}: {read}",
        started.elapsed()
    );

    // Quorum back: the value is the one written before, and writes work again.
    cluster.start_member(0);
    wait_until("member 2 healthy", Duration::from_secs(10), || {
        cluster.healthy(2)
    });
    let mut after = None;
    wait_until(
        "a get after quorum returned",
        Duration::from_secs(10),
        || {
            after = etcd.get(b"f/k").ok().flatten();
            after.is_some()
        },
    );
    let after = after.unwrap();
    assert_eq!(
        (after.value.as_slice(), after.mod_revision),
        (&b"v1"[..], revision)
    );
    assert!(matches!(
        etcd.compare_and_put(b"f/k", b"v2", revision).unwrap(),
        CasOutcome::Written { .. }
    ));
}
