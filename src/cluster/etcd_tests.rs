//! The etcd client's unit tests: endpoint URLs, the request JSON of each call, recorded
//! gateway answers, and failover against fake endpoints on loopback.
use super::*;
use std::net::TcpListener;
use std::thread::JoinHandle;

fn ok(host: &str, port: u16) -> Result<(String, u16), String> {
    Ok((host.to_string(), port))
}

#[test]
fn endpoints_parse() {
    assert_eq!(
        parse_endpoint("http://127.0.0.1:2379"),
        ok("127.0.0.1", 2379)
    );
    assert_eq!(
        parse_endpoint("http://127.0.0.1:2379/"),
        ok("127.0.0.1", 2379)
    );
    assert_eq!(
        parse_endpoint("HTTP://etcd-1.example_x.net:12379"),
        ok("etcd-1.example_x.net", 12379)
    );
    assert_eq!(parse_endpoint("http://etcd"), ok("etcd", 2379));
    assert_eq!(parse_endpoint("http://[::1]:2380"), ok("::1", 2380));
    assert_eq!(parse_endpoint("http://[fe80::1]"), ok("fe80::1", 2379));
    assert_eq!(host_port("::1", 2380), "[::1]:2380");
    assert_eq!(host_port("etcd", 2380), "etcd:2380");
}

#[test]
fn bad_endpoints_are_refused_with_the_reason() {
    let https = parse_endpoint("https://127.0.0.1:2379").unwrap_err();
    assert!(https.contains("https is not supported yet"), "{https}");
    let bare = parse_endpoint("127.0.0.1:2379").unwrap_err();
    assert!(bare.contains("no scheme"), "{bare}");
    assert!(parse_endpoint("unix://x:1")
        .unwrap_err()
        .contains("not supported"));
    for port in [
        "http://h:0",
        "http://h:65536",
        "http://h:abc",
        "http://h:",
        "http://h:+5",
    ] {
        let error = parse_endpoint(port).unwrap_err();
        assert!(error.contains("1 to 65535"), "{port}: {error}");
    }
    for bad in [
        "http://",
        "http://:2379",
        "http://::1:2379",
        "http://[::1",
        "http://[nope]:1",
        "http://[::1]x",
        "http://h:2379/v3",
        "http://u:p@h:2379",
        "http://h h:1",
    ] {
        assert!(parse_endpoint(bad).is_err(), "{bad} was accepted");
    }
}

#[test]
fn new_checks_its_arguments() {
    let second = Duration::from_secs(1);
    assert!(EtcdClient::new(&[], second)
        .unwrap_err()
        .contains("no etcd endpoints"));
    let urls = ["http://a:1".to_string(), "https://b:2".to_string()];
    assert!(EtcdClient::new(&urls, second)
        .unwrap_err()
        .contains("https"));
    let client = EtcdClient::new(&urls[..1], second).unwrap();
    assert_eq!(client.endpoint(), "a:1");
    assert_eq!(client.requests(), 0);
    assert!(EtcdClient::new(&urls[..1], Duration::ZERO).is_err());
}

#[test]
fn requests_are_the_gateways_json() {
    // "foo" is Zm9v, "bar" YmFy.
    assert_eq!(range_request(b"foo"), json!({"key": "Zm9v"}));
    assert_eq!(
        range_prefix_request(b"foo"),
        json!({"key": "Zm9v", "range_end": b64(b"fop")})
    );
    assert_eq!(
        range_prefix_request(b""),
        json!({"key": "AA==", "range_end": "AA=="})
    );
    assert_eq!(
        put_request(b"foo", b"bar"),
        json!({"key": "Zm9v", "value": "YmFy"})
    );
    assert_eq!(
        put_request(b"foo", b""),
        json!({"key": "Zm9v", "value": ""})
    );
    assert_eq!(delete_request(b"foo"), json!({"key": "Zm9v"}));
    assert_eq!(
        txn_request(b"foo", b"bar", 0),
        json!({
            "compare": [{"target": "MOD", "key": "Zm9v", "result": "EQUAL", "mod_revision": "0"}],
            "success": [{"request_put": {"key": "Zm9v", "value": "YmFy"}}],
            "failure": [{"request_range": {"key": "Zm9v"}}],
        })
    );
    assert_eq!(
        txn_request(b"foo", b"bar", 1 << 40)["compare"][0]["mod_revision"],
        "1099511627776"
    );
}

#[test]
fn prefix_ends_as_etcdctl_computes_them() {
    assert_eq!(prefix_end(b"a"), b"b");
    assert_eq!(prefix_end(b"ilp/limits/"), b"ilp/limits0");
    assert_eq!(prefix_end(&[0x61, 0xff]), [0x62]);
    assert_eq!(prefix_end(&[0x61, 0xfe, 0xff, 0xff]), [0x61, 0xff]);
    assert_eq!(prefix_end(&[0xff, 0xff]), [0]);
    assert_eq!(prefix_end(b""), [0]);
}

const HEADER: &str = r#""header":{"cluster_id":"6447124141051998435","member_id":"13144645163086586166","revision":"5","raft_term":"2"}"#;

fn answer(rest: &str) -> Value {
    let text = if rest.is_empty() {
        format!("{{{HEADER}}}")
    } else {
        format!("{{{HEADER},{rest}}}")
    };
    serde_json::from_str(&text).unwrap()
}

fn kv(key: &[u8], value: &[u8], mod_revision: i64, create_revision: i64) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        value: value.to_vec(),
        mod_revision,
        create_revision,
    }
}

#[test]
fn recorded_range_answers_parse() {
    // etcd 3.4.23, a missing key: no kvs, no count.
    assert_eq!(parse_range_response(&answer("")), Ok(vec![]));
    assert_eq!(header_revision(&answer("")), Ok(5));
    let found = answer(
        r#""kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmF6"}],"count":"1""#,
    );
    assert_eq!(
        parse_range_response(&found),
        Ok(vec![kv(b"foo", b"baz", 3, 2)])
    );
    // An empty value is left out, and so would be a zero revision; numbers are tolerated.
    let sparse = answer(r#""kvs":[{"key":"Zm9v","create_revision":7,"version":"1"}],"count":"1""#);
    assert_eq!(
        parse_range_response(&sparse),
        Ok(vec![kv(b"foo", b"", 0, 7)])
    );
    assert!(parse_range_response(&answer(r#""kvs":[{"key":"!!"}]"#)).is_err());
    assert!(parse_range_response(&answer(r#""kvs":[{"key":"Zm9v","mod_revision":"x"}]"#)).is_err());
    assert!(parse_range_response(&answer(r#""kvs":{}"#)).is_err());
    assert!(header_revision(&json!({})).is_err());
}

#[test]
fn recorded_txn_answers_parse() {
    let written =
        answer(r#""succeeded":true,"responses":[{"response_put":{"header":{"revision":"3"}}}]"#);
    assert_eq!(
        parse_txn_response(&written),
        Ok(CasOutcome::Written { revision: 5 })
    );
    // A conflict: `succeeded` left out, the failure branch's range holds the key.
    let conflict = answer(
        r#""responses":[{"response_range":{"header":{"revision":"5"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmF6"}],"count":"1"}}]"#,
    );
    assert_eq!(
        parse_txn_response(&conflict),
        Ok(CasOutcome::Conflict {
            current: Some(kv(b"foo", b"baz", 3, 2))
        })
    );
    // A conflict on a key that does not exist: the range has no kvs.
    let missing = answer(r#""responses":[{"response_range":{"header":{"revision":"5"}}}]"#);
    assert_eq!(
        parse_txn_response(&missing),
        Ok(CasOutcome::Conflict { current: None })
    );
    assert!(parse_txn_response(&answer("")).is_err());
    assert!(parse_txn_response(&answer(r#""succeeded":"yes""#)).is_err());
}

#[test]
fn gateway_errors_parse() {
    let body = br#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#;
    let error = GatewayError::parse(body).unwrap();
    assert_eq!(error.code, 14);
    assert_eq!(error.message, "etcdserver: request timed out");
    assert!(error.retryable());
    let bad = GatewayError::parse(br#"{"error":"illegal base64 data at input byte 0","code":3}"#)
        .unwrap();
    assert!(!bad.retryable());
    assert_eq!(GatewayError::parse(b"Not Found\n"), None);
}

/// etcd 3.4.23 answering a put on a member that has lost quorum.
const CHUNKED_500: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\n\
    Content-Type: application/json\r\n\
    Trailer: Grpc-Trailer-Content-Type\r\n\
    Date: Wed, 02 Dec 2026 12:29:35 GMT\r\n\
    Transfer-Encoding: chunked\r\n\r\n\
    54\r\n{\"error\":\"context deadline exceeded\",\"message\":\"context deadline exceeded\",\"code\":2}\r\n\
    0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n";

#[test]
fn chunked_answers_are_read_whole() {
    let reply = parse_response(CHUNKED_500, false).unwrap().unwrap();
    assert_eq!(reply.status, 500);
    assert_eq!(GatewayError::parse(&reply.body).unwrap().code, 2);
    // Every cut short of the end is incomplete, not an error.
    for end in 0..CHUNKED_500.len() {
        assert_eq!(
            parse_response(&CHUNKED_500[..end], false),
            Ok(None),
            "at {end}"
        );
    }
    let split = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n5;x=1\r\n\":1}\n\r\n0\r\n\r\n";
    let reply = parse_response(split, false).unwrap().unwrap();
    assert_eq!(reply.body, b"{\"a\":1}\n");
    let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n";
    assert!(matches!(
        parse_response(bad, false),
        Err(ParseError::Malformed(_))
    ));
    let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffff\r\n";
    assert_eq!(parse_response(huge, false), Err(ParseError::TooLarge));
}

#[test]
fn bodies_end_by_length_or_at_eof() {
    let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    assert_eq!(parse_response(&sized[..sized.len() - 1], false), Ok(None));
    assert_eq!(parse_response(sized, false).unwrap().unwrap().body, b"{}");
    let unsized_ = b"HTTP/1.1 404 Not Found\r\n\r\nNot Found\n";
    assert_eq!(parse_response(unsized_, false), Ok(None));
    let reply = parse_response(unsized_, true).unwrap().unwrap();
    assert_eq!((reply.status, &reply.body[..]), (404, &b"Not Found\n"[..]));
    let big = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        MAX_RESPONSE + 1
    );
    assert_eq!(
        parse_response(big.as_bytes(), false),
        Err(ParseError::TooLarge)
    );
    assert!(matches!(
        parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", false),
        Err(ParseError::Malformed(_))
    ));
}

/// What a fake endpoint does with each connection.
#[derive(Clone, Copy)]
enum Serve {
    /// Read the request and close without an answer.
    Close,
    /// Read the request and answer nothing until the client goes.
    Hang,
    /// Read the request, answer this status and body (Content-Length).
    Answer(u16, &'static str),
    /// Read the request, answer 200 with a chunked body.
    Chunked(&'static str),
}

/// A fake endpoint on loopback serving `connections` connections, one behaviour each;
/// joins to the requests it read (head and body).
fn fake(connections: Vec<Serve>) -> (String, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for serve in connections {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let request = read_request(&mut stream);
            requests.push(request);
            let answer = match serve {
                // Closed after reading the request, so the client sees an orderly end
                // of stream (closing with the request unread would reset instead).
                Serve::Close => continue,
                Serve::Hang => {
                    // Until the client gives up and closes.
                    let _ = stream.read(&mut [0u8; 16]);
                    continue;
                }
                Serve::Answer(status, body) => format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
                Serve::Chunked(body) => {
                    let (a, b) = body.split_at(body.len() / 2);
                    format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                         {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                        a.len(),
                        b.len()
                    )
                }
            };
            // The client may already be gone (a 4xx test does not read on).
            let _ = stream.write_all(answer.as_bytes());
        }
        requests
    });
    (url, thread)
}

fn read_request(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "the client closed mid-request");
        data.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head) = request.parse(&data).unwrap() {
            let length: usize = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap();
            if data.len() >= head + length {
                return String::from_utf8(data).unwrap();
            }
        }
    }
}

/// A loopback URL nothing listens on (bound, then released).
fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

const RANGE_ANSWER: &str = r#"{"header":{"cluster_id":"1","member_id":"2","revision":"9","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"8","version":"3","value":"YmFy"}],"count":"1"}"#;
const UNAVAILABLE: &str = r#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#;

#[test]
fn a_fake_endpoint_answers_a_range() {
    let (url, server) = fake(vec![
        Serve::Answer(200, RANGE_ANSWER),
        Serve::Chunked(RANGE_ANSWER),
    ]);
    let mut client = EtcdClient::new(std::slice::from_ref(&url), Duration::from_secs(5)).unwrap();
    assert_eq!(client.get(b"foo").unwrap(), Some(kv(b"foo", b"bar", 8, 2)));
    assert_eq!(
        client.range_prefix(b"fo").unwrap(),
        vec![kv(b"foo", b"bar", 8, 2)]
    );
    assert_eq!(client.requests(), 2);
    assert_eq!(client.endpoint(), url.trim_start_matches("http://"));
    let requests = server.join().unwrap();
    assert!(
        requests[0].starts_with("POST /v3/kv/range HTTP/1.1\r\n"),
        "{}",
        requests[0]
    );
    assert!(requests[0].contains("\r\nConnection: close\r\n"));
    assert!(
        requests[0].ends_with(r#"{"key":"Zm9v"}"#),
        "{}",
        requests[0]
    );
    assert!(
        requests[1].ends_with(r#"{"key":"Zm8=","range_end":"ZnA="}"#),
        "{}",
        requests[1]
    );
}

#[test]
fn calls_fail_over_to_the_next_endpoint() {
    let (closing, closing_server) = fake(vec![Serve::Close]);
    let (busy, busy_server) = fake(vec![Serve::Answer(503, UNAVAILABLE)]);
    let (hung, hung_server) = fake(vec![Serve::Hang]);
    let (good, good_server) = fake(vec![Serve::Answer(200, RANGE_ANSWER); 2]);
    let urls = [closed_url(), closing, busy, hung, good.clone()];
    let mut client = EtcdClient::new(&urls, Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    assert_eq!(client.get(b"foo").unwrap(), Some(kv(b"foo", b"bar", 8, 2)));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(client.endpoint(), good.trim_start_matches("http://"));
    assert_eq!(client.requests(), 5);
    // The next call starts where the last answer came from.
    assert_eq!(client.get(b"foo").unwrap(), Some(kv(b"foo", b"bar", 8, 2)));
    assert_eq!(client.requests(), 6);
    closing_server.join().unwrap();
    busy_server.join().unwrap();
    hung_server.join().unwrap();
    good_server.join().unwrap();
}

#[test]
fn when_every_endpoint_fails_each_is_named() {
    let (closing, closing_server) = fake(vec![Serve::Close]);
    let (busy, busy_server) = fake(vec![Serve::Answer(503, UNAVAILABLE)]);
    let (hung, hung_server) = fake(vec![Serve::Hang]);
    let refused = closed_url();
    let urls = [closing.clone(), busy.clone(), hung.clone(), refused.clone()];
    let mut client = EtcdClient::new(&urls, Duration::from_millis(300)).unwrap();
    let error = client.put(b"k", b"v").unwrap_err();
    let EtcdError::Unreachable(detail) = &error else {
        panic!("{error:?}");
    };
    let text = error.to_string();
    assert!(text.starts_with("no etcd endpoint answered: "), "{text}");
    for (url, what) in [
        (&closing, "the connection closed without an answer"),
        (
            &busy,
            "HTTP 503: etcdserver: request timed out (gRPC code 14)",
        ),
        (&hung, "read timed out"),
        (&refused, "connect"),
    ] {
        let expected = format!("{}: {what}", url.trim_start_matches("http://"));
        assert!(detail.contains(&expected), "{expected} not in {detail}");
    }
    assert_eq!(client.requests(), 4);
    closing_server.join().unwrap();
    busy_server.join().unwrap();
    hung_server.join().unwrap();
}

#[test]
fn a_4xx_is_not_failed_over() {
    let body = r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#;
    let (refusing, server) = fake(vec![Serve::Answer(400, body)]);
    let (good, _unused) = fake(vec![]);
    let mut client = EtcdClient::new(&[refusing.clone(), good], Duration::from_secs(5)).unwrap();
    let error = client.put(b"", b"v").unwrap_err();
    let endpoint = refusing.trim_start_matches("http://").to_string();
    assert_eq!(
        error,
        EtcdError::Status {
            endpoint: endpoint.clone(),
            status: 400,
            body: body.to_string()
        }
    );
    assert!(error
        .to_string()
        .contains(&format!("etcd at {endpoint} answered HTTP 400")));
    assert_eq!(client.requests(), 1);
    server.join().unwrap();
}

#[test]
fn garbage_in_a_200_is_a_protocol_error() {
    let (url, server) = fake(vec![
        Serve::Answer(200, "not json"),
        Serve::Answer(200, r#"{"header":{"revision":"1"},"kvs":[{"key":"%%"}]}"#),
    ]);
    let mut client = EtcdClient::new(&[url], Duration::from_secs(5)).unwrap();
    assert!(matches!(client.get(b"k"), Err(EtcdError::Protocol(e)) if e.contains("not JSON")));
    assert!(matches!(client.get(b"k"), Err(EtcdError::Protocol(e)) if e.contains("base64")));
    server.join().unwrap();
}
