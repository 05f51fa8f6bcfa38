//! Unit tests of the link table (`links.rs`).

use super::*;

const CAPS: Caps = Caps {
    links_max: 2,
    unauthenticated_max: 1,
};

fn add(links: &mut Links, transport: Transport, admission: Admission) -> Result<LinkId, Refused> {
    links.add(transport, None, admission, CAPS, 0)
}

#[test]
fn pending_and_authenticated_links_have_their_own_caps() {
    let mut links = Links::default();
    let pending = add(&mut links, Transport::Handshake, Admission::Pending).unwrap();
    assert_eq!(
        add(&mut links, Transport::Handshake, Admission::Pending),
        Err(Refused::Unauthenticated)
    );
    let a = add(&mut links, Transport::Handshake, Admission::Authenticated).unwrap();
    add(&mut links, Transport::Handshake, Admission::Authenticated).unwrap();
    assert!(
        !links.authenticate(pending, CAPS.links_max),
        "links_max is full"
    );
    links.remove(a).unwrap();
    assert!(links.authenticate(pending, CAPS.links_max));
    assert_eq!(links.counters.links_authenticated, 2);
    assert_eq!(links.counters.links_unauthenticated, 0);
    // The freed index comes back under a new generation: the old id finds nothing.
    let again = add(&mut links, Transport::Handshake, Admission::Pending).unwrap();
    assert_eq!(again.index, a.index);
    assert_ne!(again.generation, a.generation);
    assert!(links.get(a).is_none());
}

#[test]
fn a_queue_past_its_cap_is_dropped_and_the_link_closes() {
    let mut links = Links::default();
    let id = add(&mut links, Transport::Handshake, Admission::Authenticated).unwrap();
    links.push_raw(id.index, &[&[0u8; 60]], 100);
    assert!(!links.get(id).unwrap().closing);
    links.push_raw(id.index, &[&[0u8; 60]], 100);
    let link = links.get(id).unwrap();
    assert!(link.closing && link.out.is_empty());
    assert_eq!(links.counters.queue_overflows, 1);
    links.push_raw(id.index, &[&[0u8; 1]], 100);
    assert!(
        links.get(id).unwrap().out.is_empty(),
        "nothing more is queued"
    );
}

#[test]
fn an_inline_write_leaves_what_the_socket_refused_queued_in_order() {
    let mut links = Links::default();
    let id = add(&mut links, Transport::Handshake, Admission::Authenticated).unwrap();
    // Nothing queued: nothing to write, and no writer needed.
    assert_eq!(
        links.write_inline(id.index, 50, |_| panic!("no send")),
        (true, false)
    );
    links.push_raw(id.index, &[b"abcdef"], 100);
    // The socket takes four bytes: the rest stays queued for the writer task.
    let mut wire = Vec::new();
    let took = links.write_inline(id.index, 50, |b| {
        wire.extend_from_slice(&b[..4]);
        Ok(4)
    });
    assert_eq!(took, (false, false));
    let link = links.get(id).unwrap();
    assert_eq!((link.out.as_slice(), link.taken()), (&b"ef"[..], 4));
    // A refusal (EAGAIN) takes nothing.
    let refused = links.write_inline(id.index, 50, |_| Err(std::io::ErrorKind::WouldBlock.into()));
    assert_eq!(refused, (false, false));
    // The writer task holds a batch: the queue is its, whatever the socket would take.
    let mut batch = Vec::new();
    links.take(id, &mut batch, 50);
    links.push_raw(id.index, &[b"gh"], 100);
    assert_eq!(
        links.write_inline(id.index, 50, |_| panic!("no send")),
        (false, false)
    );
    // Its batch written, the writer takes the (empty) queue: inline writes resume, and a
    // reader paused for room is resumed once at most `half` is owed.
    wire.extend_from_slice(&batch);
    batch.clear();
    links.take(id, &mut batch, 50);
    assert_eq!(batch, b"gh");
    wire.extend_from_slice(&batch);
    batch.clear();
    links.take(id, &mut batch, 50);
    assert!(batch.is_empty());
    links.push_raw(id.index, &[b"ij"], 100);
    links.get_mut(id).unwrap().reader_paused = true;
    let took = links.write_inline(id.index, 50, |b| {
        wire.extend_from_slice(b);
        Ok(b.len())
    });
    assert_eq!(took, (true, true));
    assert_eq!(wire, b"abcdefghij", "every byte once, in order");
    // A closing link is the writer task's: it writes the rest and closes the socket.
    links.push_raw(id.index, &[b"k"], 100);
    links.close(id);
    assert_eq!(
        links.write_inline(id.index, 50, |_| panic!("no send")),
        (false, false)
    );
}

#[test]
fn http_answers_leave_in_request_order() {
    let mut http = HttpLink::new();
    let first = http.begin(true);
    let second = http.begin(false);
    http.owe_until(20);
    http.owe_until(10);
    assert_eq!(http.owed_until_ms(), 20);
    // The second is ready first: it waits for the first.
    let out = http.respond(second, Some(b"two"), 200).unwrap();
    assert!(out.head.is_none() && out.ready.is_empty());
    let out = http.respond(first, Some(b"one"), 200).unwrap();
    let (head, n) = out.head.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    assert_eq!(out.ready.len(), 1);
    assert!(out.ready[0].ends_with(b"two"));
    assert!(out.closing, "the second asked for Connection: close");
    assert!(http.pending.is_empty());
    assert!(http.respond(first, None, 500).is_none(), "answered once");
}
