#!/usr/bin/env bash
# Distributed-runtime benchmark: Nexmark q5 and q8 in one process (`weir run`) vs on
# two worker processes (`weir cluster`, records cross TCP), and the end-to-end latency
# through a cross-process exchange at half of the maximum throughput.
#   scripts/bench-cluster.sh                 # 10 M events per run
#   EVENTS=2000000 scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}"
cargo build -q --release -p weir-cli
W="$CARGO_TARGET_DIR/release/weir"
EVENTS="${EVENTS:-10000000}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
export WEIR_EXIT_GRACE_MS=0   # workers exit as soon as the job ends (no status to serve)

# measure LABEL CMD...: wall time and CPU time (user+sys of the command and its children)
measure() {
  local label=$1; shift
  python3 - "$label" "$EVENTS" "$@" <<'PY'
import resource, subprocess, sys, time
label, events, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
t0 = time.time()
subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.time() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = ru.ru_utime + ru.ru_stime
print(f"{label:<34} {events/wall/1e6:8.2f} M ev/s {events/cpu/1e6:8.2f} M ev/s/core   (wall {wall:.2f}s, cpu {cpu:.2f}s)")
PY
}

echo "== throughput, $EVENTS events (generator), checkpoints off"
for q in q5 q8; do
  measure "nexmark-$q run -p 1" "$W" run "nexmark-$q" -p 1 --events "$EVENTS" -q
  measure "nexmark-$q run -p 2 (1 process)" "$W" run "nexmark-$q" -p 2 --events "$EVENTS" -q
  measure "nexmark-$q cluster 2 workers" "$W" cluster "nexmark-$q" --workers 2 --events "$EVENTS" \
    --checkpoint-dir "$work/ckpt-$q" --checkpoint-interval 3600s --rest-port $port --data-port $((port + 10))
done

echo "== latency through a cross-process rebalance (2 workers)"
measure "latency-probe max throughput" "$W" cluster latency-probe --workers 2 --events "$EVENTS" \
  --checkpoint-dir "$work/ckpt-lat0" --checkpoint-interval 3600s --rest-port $port --data-port $((port + 10)) | tee "$work/max.txt"
rate=$(python3 -c "import re,sys; print(int(float(re.search(r'([0-9.]+) M ev/s ', open('$work/max.txt').read()).group(1)) * 1e6 / 2))")
n=$((rate * 20))
"$W" cluster latency-probe --workers 2 --events "$n" --rate "$rate" --output "$work/lat.jsonl" \
  --checkpoint-dir "$work/ckpt-lat" --checkpoint-interval 10s --rest-port $port --data-port $((port + 10)) >/dev/null 2>&1
python3 - "$work/lat.jsonl" "$rate" <<'PY'
import json, sys
lat = sorted(json.loads(l)["latencyUs"] for l in open(sys.argv[1]))
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
print(f"at {int(sys.argv[2]):,} ev/s (half of max), 20 s, 10 s checkpoints: {len(lat):,} samples: p50 {p(.5):.1f} ms, p99 {p(.99):.1f} ms, max {lat[-1]/1000:.1f} ms")
PY
