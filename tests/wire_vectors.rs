//! Every shared ILP and BTP vector, through the codec and through `ilp-router decode`'s JSON.

use ilp_router::decode::{decode, parse_hex, to_hex, Kind};
use ilp_router::wire::{Btp, ContentType, Packet, ProtocolData};
use serde_json::Value;

fn load(file: &str) -> Vec<Value> {
    let path = format!("{}/tests/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json: Value = serde_json::from_str(&text).expect("vector file is JSON");
    json["vectors"].as_array().expect("a vectors array").clone()
}

fn field<'a>(vector: &'a Value, name: &str) -> &'a str {
    vector[name]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no {name}", vector["name"]))
}

/// The canonical re-encoding of a checked packet.
fn reencode(kind: Kind, bytes: &[u8]) -> Vec<u8> {
    match kind {
        Kind::Ilp => {
            let mut out = vec![0u8; bytes.len() + 16];
            let n = match Packet::new_checked(bytes).expect("valid") {
                Packet::Prepare(p) => p.repr().emit(&mut out),
                Packet::Fulfill(f) => f.repr().emit(&mut out),
                Packet::Reject(r) => r.repr().emit(&mut out),
            };
            out.truncate(n);
            out
        }
        Kind::Btp => {
            let packet = Btp::new_checked(bytes).expect("valid");
            let blank = ProtocolData {
                name: &[],
                content_type: ContentType(0),
                data: &[],
            };
            let mut entries = vec![blank; packet.protocol_data_count()];
            let repr = packet.repr(&mut entries);
            let mut out = vec![0u8; repr.buffer_len()];
            assert_eq!(repr.emit(&mut out), out.len());
            out
        }
    }
}

#[derive(Default)]
struct Tally {
    valid: usize,
    invalid: usize,
    category_mismatches: Vec<String>,
}

fn run(file: &str, kind: Kind) -> Tally {
    let mut tally = Tally::default();
    for vector in load(file) {
        let name = field(&vector, "name");
        let bytes = parse_hex(field(&vector, "hex")).expect("vector hex");
        let result = decode(kind, &bytes);
        if vector["valid"].as_bool() == Some(true) {
            tally.valid += 1;
            let decoded = result.unwrap_or_else(|e| panic!("{name}: valid vector refused: {e}"));
            assert_eq!(decoded, vector["decoded"], "{name}: decoded fields differ");
            let expected = vector["reencoded_hex"]
                .as_str()
                .unwrap_or(field(&vector, "hex"));
            let lenient = vector.get("lenient").is_some();
            let canonical = to_hex(&reencode(kind, &bytes));
            if kind == Kind::Btp && lenient {
                // BTP vectors carry no re-encoding; ours must still decode to the same fields.
                let again = parse_hex(&canonical).unwrap();
                assert_eq!(decode(kind, &again).unwrap(), vector["decoded"], "{name}");
            } else {
                assert_eq!(canonical, expected, "{name}: canonical encoding differs");
            }
        } else {
            tally.invalid += 1;
            let expected = field(&vector, "error");
            match result {
                Ok(value) => panic!("{name}: invalid vector accepted as {value}"),
                Err(error) if error.as_str() == expected => {}
                Err(error) => tally.category_mismatches.push(format!(
                    "{name}: expected {expected}, got {}",
                    error.as_str()
                )),
            }
        }
    }
    println!(
        "{file}: {} valid, {} invalid, {} category mismatches",
        tally.valid,
        tally.invalid,
        tally.category_mismatches.len()
    );
    for line in &tally.category_mismatches {
        println!("  {line}");
    }
    tally
}

#[test]
fn ilp_vectors() {
    let tally = run("ilp-packets.json", Kind::Ilp);
    assert_eq!((tally.valid, tally.invalid), (71, 58), "vector counts");
    assert!(
        tally.category_mismatches.is_empty(),
        "{:#?}",
        tally.category_mismatches
    );
}

#[test]
fn btp_vectors() {
    let tally = run("btp-packets.json", Kind::Btp);
    assert_eq!((tally.valid, tally.invalid), (31, 26), "vector counts");
    assert!(
        tally.category_mismatches.is_empty(),
        "{:#?}",
        tally.category_mismatches
    );
}

/// Every valid ILP Prepare survives an in-place rewrite and still decodes.
#[test]
fn ilp_vectors_rewrite_in_place() {
    let mut rewritten = 0;
    for vector in load("ilp-packets.json") {
        if vector["valid"].as_bool() != Some(true) {
            continue;
        }
        let mut bytes = parse_hex(field(&vector, "hex")).unwrap();
        let Ok(Packet::Prepare(mut p)) = Packet::new_checked(&mut bytes[..]) else {
            continue;
        };
        let destination = p.destination().as_bytes().to_vec();
        p.set_amount(p.amount() ^ 0x5555);
        p.set_expires_at(p.expires_at() - 1000);
        let (amount, expires_at) = (p.amount(), p.expires_at());
        let again = match Packet::new_checked(&bytes[..]) {
            Ok(Packet::Prepare(p)) => p,
            other => panic!(
                "{}: rewritten Prepare no longer decodes: {other:?}",
                vector["name"]
            ),
        };
        assert_eq!((again.amount(), again.expires_at()), (amount, expires_at));
        assert_eq!(again.destination().as_bytes(), &destination[..]);
        rewritten += 1;
    }
    assert!(
        rewritten > 20,
        "only {rewritten} Prepares among the vectors"
    );
}
