#!/usr/bin/env bash
# Fills corpus/ilp_parse and corpus/btp_parse with the shared codec vectors, one file per
# vector (its `hex` as raw bytes), named seed-<vector name>. Valid and invalid vectors alike:
# the invalid ones sit one mutation away from the decoder's error paths.
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
for source, target in (("ilp-packets.json", "ilp_parse"), ("btp-packets.json", "btp_parse")):
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
