#!/usr/bin/env bash
# Side-by-side: the same four workloads in tractor (Python) and in our runtime.
#
#   benches/compare/run.sh
#
# Creates (or reuses) a venv at target/compare-venv with tractor 0.1.0a5 and
# trio 0.22, builds and runs `cargo bench --bench compare_ours`, runs
# benches/compare/tractor_bench.py, and prints
#   workload | tractor | ours | ratio (how many times faster we are)
# with the machine it ran on. Neither side uses port 1616: ours gets
# ACTOR_ARBITER=tcp://127.0.0.1:0, tractor a free registry port.
#
# Environment: PYTHON (default python3.11), CARGO_TARGET_DIR (honoured),
# TIMEOUT (seconds per side, default 600), PIN_CPU (e.g. 0: run both sides
# under `taskset -c $PIN_CPU`, all their processes on that one CPU; default
# unpinned).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

PYTHON=${PYTHON:-python3.11}
pin=()
if [[ -n ${PIN_CPU:-} ]]; then
    pin=(taskset -c "$PIN_CPU")
fi
TIMEOUT=${TIMEOUT:-600}
venv="$root/target/compare-venv"
work=$(mktemp -d "${TMPDIR:-/tmp}/compare.XXXXXX")
# Every process either side starts inherits this marker: at the end, any
# process still carrying it is a straggler.
export COMPARE_RUN_ID="compare-$$-$RANDOM$RANDOM"
export PYTHONWARNINGS=ignore

stragglers() {
    local pid
    for env in /proc/[0-9]*/environ; do
        pid=${env#/proc/}
        pid=${pid%/environ}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        if grep -qzx "COMPARE_RUN_ID=$COMPARE_RUN_ID" "$env" 2>/dev/null; then
            echo "$pid"
        fi
    done
}

cleanup() {
    local left
    left=$(stragglers)
    if [[ -n $left ]]; then
        echo "WARNING: leftover processes from this run, killing them:" >&2
        for pid in $left; do
            ps -o pid=,ppid=,args= -p "$pid" >&2 || true
        done
        # shellcheck disable=SC2086
        kill -TERM $left 2>/dev/null || true
        sleep 2
        left=$(stragglers)
        # shellcheck disable=SC2086
        [[ -n $left ]] && kill -KILL $left 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the Python side's environment -----------------------------------------
if ! "$venv/bin/python" -c '
import importlib.metadata as m, tractor, trio
assert trio.__version__.startswith("0.22") and m.version("tractor") == "0.1.0a5"' 2>/dev/null; then
    echo "== creating $venv (tractor 0.1.0a5, trio 0.22)"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check \
        'trio==0.22.*' async_generator trio_typing tricycle colorlog wrapt msgspec pdbpp
    # tractor's metadata pins pdbpp to a git URL on Python > 3.9: its
    # dependencies are installed above by name instead.
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps 'tractor==0.1.0a5'
fi
versions=$("$venv/bin/python" -c 'import sys, trio, importlib.metadata as m; print("tractor", m.version("tractor") + ", trio", trio.__version__ + ", Python", sys.version.split()[0])')

# --- our side -------------------------------------------------------------
echo "== building compare_ours (release)"
if ! cargo bench --bench compare_ours --no-run >"$work/build.log" 2>&1; then
    cat "$work/build.log" >&2
    exit 1
fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== running ours"
ACTOR_ARBITER=tcp://127.0.0.1:0 timeout -k 10 "$TIMEOUT" \
    "${pin[@]}" cargo bench --quiet --bench compare_ours >"$work/ours.out" 2>"$work/ours.err" || {
    echo "ours failed (exit $?):" >&2
    cat "$work/ours.out" "$work/ours.err" >&2
    exit 1
}
# The round trip again in the opt-in low-latency mode (each actor polls its
# channels for 50 us before it sleeps), as a row of its own.
ACTOR_ARBITER=tcp://127.0.0.1:0 ACTOR_LOW_LATENCY_US=50 timeout -k 10 "$TIMEOUT" \
    "${pin[@]}" cargo bench --quiet --bench compare_ours -- rtt >"$work/ours_ll.out" 2>"$work/ours_ll.err" || {
    echo "ours (low-latency) failed (exit $?):" >&2
    cat "$work/ours_ll.out" "$work/ours_ll.err" >&2
    exit 1
}
grep '^RESULT.*rtt_low_latency' "$work/ours_ll.out" >>"$work/ours.out"
grep '^RESULT' "$work/ours.out"

# --- tractor --------------------------------------------------------------
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "== running tractor (registry on 127.0.0.1:$port)"
timeout -k 10 "$TIMEOUT" "${pin[@]}" "$venv/bin/python" "$here/tractor_bench.py" --arbiter-port "$port" \
    >"$work/tractor.out" 2>"$work/tractor.err" || {
    echo "tractor failed (exit $?):" >&2
    tail -n 40 "$work/tractor.out" "$work/tractor.err" >&2
    exit 1
}
grep '^RESULT' "$work/tractor.out"

# --- the table ------------------------------------------------------------
echo
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -sr)"
echo "load average (1/5/15 min) before: $load_start, after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "python side: $versions"
if [[ -n ${PIN_CPU:-} ]]; then
    echo "CPU pinning: every process of both sides on CPU $PIN_CPU (taskset)"
else
    echo "CPU pinning: none"
fi
"$venv/bin/python" - "$work/tractor.out" "$work/ours.out" <<'EOF'
import json, sys

def load(path):
    out = {}
    for line in open(path):
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            out[r["workload"]] = r
    return out

tractor, ours = load(sys.argv[1]), load(sys.argv[2])
rows = [
    ("spawn_one", "spawn-to-result, 1 actor (median)", False, 20),
    ("spawn_20", "20 actors in one nursery, all results", False, 20),
    ("rtt", "round trip to a daemon (median/call)", False, 20),
    ("rtt_mean", "round trip, total / 10,000 calls", False, 20),
    ("rtt_low_latency", "round trip, low-latency mode (opt-in)", False, 20),
    ("stream", "stream 100,000 x 64 B items", True, 10),
]
for side in (tractor, ours):
    if "rtt" in side:
        side["rtt_mean"] = {"value": side["rtt"]["mean_us"], "unit": "us"}
# tractor has no such mode: its one round trip is the baseline for both rows.
if "rtt" in tractor:
    tractor["rtt_low_latency"] = tractor["rtt"]

def fmt(r):
    if r is None:
        return "-"
    v, u = r["value"], r["unit"]
    if u == "items/s":
        return f"{v:,.0f} items/s"
    if u == "ms" and v >= 1000:
        return f"{v / 1000:.2f} s"
    return f"{v:.3g} {u}" if v < 100 else f"{v:.0f} {u}"

w = (40, 16, 18, 10, 8)
def row(*cells):
    print("| " + " | ".join(
        f"{c:<{w[0]}}" if i == 0 else f"{c:>{w[i]}}" for i, c in enumerate(cells)) + " |")
row("workload", "tractor", "ours", "ratio", "target")
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
missed = []
for key, label, higher_better, target in rows:
    t, o = tractor.get(key), ours.get(key)
    if t and o and t["value"] > 0 and o["value"] > 0:
        ratio = o["value"] / t["value"] if higher_better else t["value"] / o["value"]
        rs = f"{ratio:,.1f}x"
        if ratio < target:
            missed.append(key)
    else:
        rs = "-"
        missed.append(key)
    row(label, fmt(t), fmt(o), rs, f">= {target}x")
raw, t = ours.get("rtt_raw_tcp"), tractor.get("rtt")
if raw and t:
    # Not a comparison: the loopback floor between the same two processes, and
    # the ratio a runtime with zero overhead over raw TCP would reach.
    row("floor: raw TCP round trip, same procs", "-", fmt(raw), f"<= {t['value'] / raw['value']:.1f}x", "-")
m = ours.get("spawn_20", {}).get("mode"), tractor.get("spawn_20", {}).get("mode")
print("ratio = how many times faster ours is; "
      f"spawn_20 fastest mode: ours {m[0]}, tractor {m[1]}")
print("targets met" if not missed else "targets missed: " + ", ".join(missed))
EOF

left=$(stragglers)
if [[ -z $left ]]; then
    echo "cleanup: no leftover processes"
fi
