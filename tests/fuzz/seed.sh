#!/usr/bin/env bash
# Fills corpus/ilp_parse, corpus/btp_parse and corpus/ildcp_parse with the shared codec
# vectors, one file per vector (its `hex` as raw bytes), named seed-<vector name>. Valid and
# invalid vectors alike: the invalid ones sit one mutation away from the decoder's error paths.
# corpus/ccp_parse gets each CCP vector twice: the whole packet (seed-<name>) and, for the
# Prepares, their data, the CCP payload (seed-<name>-payload).
# Then writes the hand-made seeds of ws_frame, ws_handshake, http_request and http_response
# (real upgrade requests and 101s, masked frames carrying BTP, ILP-over-HTTP requests and
# responses carrying ILP packets from the same vectors), also named seed-<name>.
# Run from anywhere; needs python3. Existing seed-* files are replaced, other corpus files
# (found by fuzzing, ignored by git) are left alone.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
vectors="$here/../vectors"

python3 - "$vectors" "$here/corpus" <<'PY'
import json
import os
import re
import sys

vectors, corpus = sys.argv[1], sys.argv[2]
for source, target in (
    ("ilp-packets.json", "ilp_parse"),
    ("btp-packets.json", "btp_parse"),
    ("ildcp.json", "ildcp_parse"),
):
    out = os.path.join(corpus, target)
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        if old.startswith("seed-") and not old.startswith("seed-crash-"):
            os.remove(os.path.join(out, old))
    with open(os.path.join(vectors, source)) as f:
        entries = json.load(f)["vectors"]
    for entry in entries:
        name = entry["name"]
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            sys.exit(f"{source}: vector name {name!r} is not a safe file name")
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(bytes.fromhex(entry["hex"]))
    print(f"{target}: {len(entries)} seeds from {source}")
PY

python3 - "$vectors" "$here/corpus" <<'PY'
import json
import os
import re
import sys

vectors, corpus = sys.argv[1], sys.argv[2]


def length(buf, at):
    """An OER length determinant at `at`: (value, offset after it)."""
    first = buf[at]
    if first < 0x80:
        return first, at + 1
    n = first & 0x7F
    return int.from_bytes(buf[at + 1 : at + 1 + n], "big"), at + 1 + n


def prepare_data(packet):
    """The data of an ILP Prepare (type 12): after the envelope's length, amount, expiry,
    condition and destination."""
    _, at = length(packet, 1)
    at += 8 + 17 + 32
    n, at = length(packet, at)
    n, at = length(packet, at + n)
    return packet[at : at + n]


out = os.path.join(corpus, "ccp_parse")
os.makedirs(out, exist_ok=True)
for old in os.listdir(out):
    if old.startswith("seed-") and not old.startswith("seed-crash-"):
        os.remove(os.path.join(out, old))
with open(os.path.join(vectors, "ccp.json")) as f:
    entries = json.load(f)["vectors"]
count = 0
for entry in entries:
    name = entry["name"]
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        sys.exit(f"ccp.json: vector name {name!r} is not a safe file name")
    packet = bytes.fromhex(entry["hex"])
    seeds = {"seed-" + name: packet}
    if packet[0] == 12:
        payload = prepare_data(packet)
        if "payload_hex" in entry and bytes.fromhex(entry["payload_hex"]) != payload:
            sys.exit(f"ccp.json: {name}: payload_hex is not the Prepare's data")
        seeds["seed-" + name + "-payload"] = payload
    for file, data in seeds.items():
        with open(os.path.join(out, file), "wb") as f:
            f.write(data)
        count += 1
print(f"ccp_parse: {count} seeds from ccp.json")
PY

python3 - "$vectors" "$here/corpus" <<'PY'
import json
import os
import sys

vectors, corpus = sys.argv[1], sys.argv[2]


def vector(source, name):
    with open(os.path.join(vectors, source)) as f:
        for entry in json.load(f)["vectors"]:
            if entry["name"] == name:
                return bytes.fromhex(entry["hex"])
    sys.exit(f"{source}: no vector {name}")


PREPARE = vector("ilp-packets.json", "fixture_ilp_packet_prepare_example01")
FULFILL = vector("ilp-packets.json", "fixture_ilp_packet_fulfill_example01")
REJECT = vector("ilp-packets.json", "fixture_ilp_packet_reject_example01")
BTP_PREPARE = vector("btp-packets.json", "message_ilp_prepare")
BTP_FULFILL = vector("btp-packets.json", "response_ilp_fulfill")
BTP_AUTH = vector("btp-packets.json", "message_auth_ilp_plugin_btp_style")
MASK = bytes.fromhex("37fa213d")


def frame(opcode, payload, mask=MASK, fin=True, length=None):
    """An RFC 6455 frame; `length` forces a longer length encoding (126 or 127)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if length is None:
        length = 0 if n < 126 else 126 if n <= 0xFFFF else 127
    if length == 0:
        head += bytes([bit | n])
    elif length == 126:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def http(head, body=b""):
    return head.replace(b"\n", b"\r\n") + b"\r\n" + body


SEEDS = {
    "ws_frame": {
        # RFC 6455 section 5.7.
        "rfc6455_masked_text_hello": bytes.fromhex("818537fa213d7f9f4d5158"),
        "rfc6455_unmasked_text_hello": bytes.fromhex("810548656c6c6f"),
        "rfc6455_fragmented_text_hello": bytes.fromhex("010348656c80026c6f"),
        "rfc6455_masked_pong_hello": bytes.fromhex("8a8537fa213d7f9f4d5158"),
        "rfc6455_binary_256_unmasked_header": bytes.fromhex("827e0100"),
        "rfc6455_binary_64k_unmasked_header": bytes.fromhex("827f0000000000010000"),
        # What ilp-plugin-btp sends: masked binary frames, each one BTP packet.
        "masked_binary_btp_auth": frame(0x2, BTP_AUTH),
        "masked_binary_btp_prepare": frame(0x2, BTP_PREPARE),
        "masked_binary_btp_prepare_16_bit_length": frame(0x2, BTP_PREPARE, length=126),
        "masked_binary_btp_prepare_64_bit_length": frame(0x2, BTP_PREPARE, length=127),
        "unmasked_binary_btp_fulfill": frame(0x2, BTP_FULFILL, mask=None),
        "masked_binary_300_bytes": frame(0x2, bytes(range(256)) + bytes(44)),
        "masked_fragmented_binary_with_ping": frame(0x2, BTP_PREPARE[:40], fin=False)
        + frame(0x9, b"ping")
        + frame(0x0, BTP_PREPARE[40:]),
        "masked_close_1000_bye": frame(0x8, (1000).to_bytes(2, "big") + b"bye"),
        "masked_close_empty": frame(0x8, b""),
        "masked_ping_then_btp_prepare": frame(0x9, b"") + frame(0x2, BTP_PREPARE),
    },
    "ws_handshake": {
        # RFC 6455 section 1.3 / 4.1, with its sample nonce.
        "rfc6455_upgrade_request": http(
            b"GET /chat HTTP/1.1\n"
            b"Host: server.example.com\n"
            b"Upgrade: websocket\n"
            b"Connection: Upgrade\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
            b"Origin: http://example.com\n"
            b"Sec-WebSocket-Version: 13\n"
        ),
        "rfc6455_101_response": http(
            b"HTTP/1.1 101 Switching Protocols\n"
            b"Upgrade: websocket\n"
            b"Connection: Upgrade\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\n"
        ),
        "rfc6455_101_response_then_frame": http(
            b"HTTP/1.1 101 Switching Protocols\n"
            b"upgrade: WebSocket\n"
            b"connection: keep-alive, Upgrade\n"
            b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\n"
        )
        + frame(0x2, BTP_FULFILL, mask=None),
        # ilp-plugin-btp (the `ws` npm client), which offers permessage-deflate.
        "ws_npm_upgrade_request": http(
            b"GET / HTTP/1.1\n"
            b"Sec-WebSocket-Version: 13\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
            b"Connection: Upgrade\n"
            b"Upgrade: websocket\n"
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\n"
            b"Host: 127.0.0.1:7768\n"
        )
        + frame(0x2, BTP_AUTH),
        # interledger-rs: the account in the path, the token in a header.
        "interledger_rs_upgrade_request": http(
            b"GET /accounts/alice/ilp/btp HTTP/1.1\n"
            b"Host: router.example:7768\n"
            b"Connection: Upgrade\n"
            b"Upgrade: websocket\n"
            b"Sec-WebSocket-Version: 13\n"
            b"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\n"
            b"Authorization: Bearer alice:secret\n"
        ),
        "version_8_upgrade_request": http(
            b"GET / HTTP/1.1\n"
            b"Host: r\n"
            b"Upgrade: websocket\n"
            b"Connection: Upgrade\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
            b"Sec-WebSocket-Version: 8\n"
        ),
        "426_answer": http(
            b"HTTP/1.1 426 Upgrade Required\n"
            b"Connection: close\n"
            b"Content-Length: 0\n"
            b"Sec-WebSocket-Version: 13\n"
        ),
    },
    "http_request": {
        # ilp-plugin-http 1.6 (node-fetch) posting a Prepare.
        "ilp_plugin_http_post_prepare": http(
            b"POST / HTTP/1.1\n"
            b"Host: 127.0.0.1:7770\n"
            b"Authorization: Bearer alice-secret\n"
            b"Content-Type: application/ilp+octet-stream\n"
            b"Accept: */*\n"
            b"Content-Length: %d\n"
            b"User-Agent: node-fetch/1.0 (+https://github.com/bitinn/node-fetch)\n"
            b"Accept-Encoding: gzip,deflate\n"
            b"Connection: keep-alive\n" % len(PREPARE),
            PREPARE,
        ),
        # interledger-rs (reqwest): the account in the path, a token with colons.
        "interledger_rs_post_prepare": http(
            b"POST /accounts/alice/ilp HTTP/1.1\n"
            b"authorization: Bearer alice:secret:with:colons\n"
            b"content-type: application/octet-stream\n"
            b"accept: */*\n"
            b"host: router\n"
            b"content-length: %d\n" % len(PREPARE),
            PREPARE,
        ),
        # The router's own client (write_request_head), two requests pipelined.
        "router_client_post_pipelined": (
            http(
                b"POST /ilp HTTP/1.1\n"
                b"Host: peer.example:8080\n"
                b"Authorization: Bearer user:pass\n"
                b"Content-Type: application/octet-stream\n"
                b"Accept: application/octet-stream\n"
                b"Content-Length: %d\n" % len(PREPARE),
                PREPARE,
            )
            * 2
        ),
        "http10_bare_token_close": http(
            b"POST /x HTTP/1.0\n"
            b"Authorization: tok\n"
            b"Content-Length: 0\n"
            b"Connection: close\n"
        ),
        "get_405": http(b"GET / HTTP/1.1\nHost: x\n"),
        "chunked_411": http(
            b"POST / HTTP/1.1\nAuthorization: Bearer t\nTransfer-Encoding: chunked\n",
            b"5\r\nhello\r\n0\r\n\r\n",
        ),
    },
    "http_response": {
        # The router's server (write_response) answering with a Fulfill, then a Reject.
        "router_200_fulfill_then_reject": http(
            b"HTTP/1.1 200 OK\n"
            b"Content-Type: application/octet-stream\n"
            b"Content-Length: %d\n" % len(FULFILL),
            FULFILL,
        )
        + http(
            b"HTTP/1.1 200 OK\n"
            b"Content-Type: application/octet-stream\n"
            b"Content-Length: %d\n"
            b"Connection: close\n" % len(REJECT),
            REJECT,
        ),
        # The JS reference connector (express) answering with a Fulfill.
        "express_200_fulfill": http(
            b"HTTP/1.1 200 OK\n"
            b"X-Powered-By: Express\n"
            b"Content-Type: application/octet-stream\n"
            b"Content-Length: %d\n"
            b"ETag: W/\"43-1pZ4e1T0yC6pVQ2LYN0Xnw\"\n"
            b"Date: Tue, 01 Dec 2026 12:00:00 GMT\n"
            b"Connection: keep-alive\n"
            b"Keep-Alive: timeout=5\n" % len(FULFILL),
            FULFILL,
        ),
        "413_close": http(
            b"HTTP/1.1 413 Payload Too Large\nContent-Length: 0\nConnection: close\n"
        ),
        "429_rate_limited": http(
            b"HTTP/1.1 429 Too Many Requests\nRetry-After: 1\nContent-Length: 0\n"
        ),
        "http10_500": http(b"HTTP/1.0 500 Internal Server Error\ncontent-length: 5\n", b"oops\n"),
        "chunked_411": http(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"0\r\n\r\n"),
    },
}

for target, seeds in SEEDS.items():
    out = os.path.join(corpus, target)
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        if old.startswith("seed-") and not old.startswith("seed-crash-"):
            os.remove(os.path.join(out, old))
    for name, data in seeds.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(seeds)} hand-made seeds")
PY
