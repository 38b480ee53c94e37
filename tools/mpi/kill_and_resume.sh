#!/usr/bin/env bash
# A data-parallel run killed and resumed (issue: MPI data parallelism).
#
# 1. DAS on all-MiniLM-L6-v2 in one process: the reference.
# 2. The same under `mpirun -np 2 ... --distributed`; once a mid-domain
#    checkpoint of the first domain exists, one rank is killed with SIGKILL.
#    mpirun must then end the whole job with an error within 60 s.
# 3. `--resume` under mpirun finishes the run; its results.json must equal
#    the reference within 1e-5 relative; so must a copy of the killed run
#    resumed by one process (a run may change its number of ranks).
#
# Needs the example built with the mpi feature
# (cargo build --features mpi --example continual_domains) and
# all-MiniLM-L6-v2 (tools/fetch_minilm.sh). The domains are the repo's own
# text: docs, Rust sources, and the README as general text.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/debug/examples/continual_domains
model=.cache/all-MiniLM-L6-v2
if [ ! -f "$model/model.safetensors" ]; then
  echo "kill_and_resume: all-MiniLM-L6-v2 is not in $model; skipped"
  exit 0
fi
export OMPI_MCA_btl_vader_single_copy_mechanism=none RAYON_NUM_THREADS=1
mpirun=(mpirun --allow-run-as-root --oversubscribe -x RAYON_NUM_THREADS
        -x OMPI_MCA_btl_vader_single_copy_mechanism -np 2)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/docs" "$tmp/code" "$tmp/general"
for f in docs/*.md; do cp "$f" "$tmp/docs/$(basename "$f").txt"; done
find src -name '*.rs' | sort | while read -r f; do cp "$f" "$tmp/code/$(echo "$f" | tr / _).txt"; done
cp README.md "$tmp/general/readme.txt"
args=(--model "$model" --domain "docs=$tmp/docs" --domain "code=$tmp/code"
      --general "$tmp/general" --method das --steps 12 --seq-len 32 --batch-size 4
      --importance-batches 4 --max-chunks 48 --checkpoint-every 2)

echo "-- one process"
"$bin" "${args[@]}" --out "$tmp/alone" > "$tmp/alone.log" 2>&1 || { tail -20 "$tmp/alone.log"; exit 1; }

echo "-- two ranks, one killed after a mid-domain checkpoint"
"${mpirun[@]}" "$bin" --distributed "${args[@]}" --out "$tmp/ranks" > "$tmp/killed.log" 2>&1 &
job=$!
for _ in $(seq 600); do
  [ -d "$tmp/ranks/checkpoints/000-0000004" ] && break
  sleep 0.2
done
if [ ! -d "$tmp/ranks/checkpoints/000-0000004" ]; then
  echo "no mid-domain checkpoint appeared"; tail -20 "$tmp/killed.log"; exit 1
fi
victim="$(pgrep -f -n -- "$bin --distributed")"
kill -9 "$victim"
killed_at=$(date +%s)
status=0
for _ in $(seq 600); do
  kill -0 "$job" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$job" 2>/dev/null; then
  echo "the job did not end within 60 s of a rank's death"; kill -9 "$job"; exit 1
fi
wait "$job" || status=$?
echo "   rank (pid $victim) killed; mpirun ended with status $status after $(( $(date +%s) - killed_at )) s"
if [ "$status" -eq 0 ]; then echo "mpirun reported success after a rank was killed"; exit 1; fi

cp -r "$tmp/ranks" "$tmp/alone-resumed"

echo "-- two ranks, --resume"
"${mpirun[@]}" "$bin" --distributed "${args[@]}" --out "$tmp/ranks" --resume > "$tmp/resumed.log" 2>&1 \
  || { tail -20 "$tmp/resumed.log"; exit 1; }
grep -m1 "resum" "$tmp/resumed.log" || true
same() {
  python3 - "$tmp/alone/results.json" "$2/results.json" "$1" <<'PY'
import json, sys
a, b = (json.load(open(p))["matrix"] for p in sys.argv[1:3])
flat = lambda m: m["base"] + [x for row in m["after"] for x in row]
worst = max(abs(x - y) / abs(x) for x, y in zip(flat(a), flat(b)))
print(f"   {sys.argv[3]} against one process: largest relative difference {worst:.2e}")
sys.exit(0 if len(flat(a)) == len(flat(b)) and worst <= 1e-5 else 1)
PY
}
same "resumed on two ranks" "$tmp/ranks"

echo "-- the killed run resumed by one process"
"$bin" "${args[@]}" --out "$tmp/alone-resumed" --resume > "$tmp/alone-resumed.log" 2>&1 \
  || { tail -20 "$tmp/alone-resumed.log"; exit 1; }
same "resumed by one process" "$tmp/alone-resumed"
echo "kill_and_resume: ok"
