#!/usr/bin/env bash
# Builds the actor-transport fuzz targets; given SECONDS, also fuzzes them for
# that long in total, shared among the targets (a crash, a leak, a >64 MiB
# allocation or a 10 s input fails).
#
#   fuzz/build.sh            # build only
#   fuzz/build.sh 60         # build, then fuzz for 60 s: 20 s per target
#
# Targets: decode_frame (the frame decoder), session (a call session fed
# decoded frames and local operations), handshake (either side of the
# handshake against a scripted peer).
#
# cargo-fuzz passes nightly-only rustc flags (-Zsanitizer=address, sancov). On a
# stable toolchain they are accepted with RUSTC_BOOTSTRAP=1, which this script
# sets; FUZZ_TOOLCHAIN=nightly (or any rustup toolchain name) picks another
# toolchain. cargo-fuzz itself is installed from crates.io if missing. Build
# output goes to $CARGO_TARGET_DIR if set, else fuzz/target; the corpus grows in
# fuzz/corpus/<target>, crashing inputs land in fuzz/artifacts/<target>. Inputs
# kept in fuzz/seeds/<target> start every run, so a short one (CI's) still
# reaches the paths that are hard to find (a handshake that succeeds).
set -euo pipefail

secs="${1:-0}"
if ! [[ "$secs" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS]" >&2
    exit 2
fi
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
toolchain=()
if [[ -n "${FUZZ_TOOLCHAIN:-}" ]]; then
    toolchain=("+${FUZZ_TOOLCHAIN}")
fi

targets=$(cargo ${toolchain[@]+"${toolchain[@]}"} fuzz list)
for t in $targets; do
    echo "== building $t" >&2
    cargo ${toolchain[@]+"${toolchain[@]}"} fuzz build "$t"
done

if (( secs > 0 )); then
    count=$(wc -w <<<"$targets")
    # Each target gets an equal share, at least a second; the first takes the
    # remainder, so the total is SECONDS (or one second per target).
    share=$(( secs / count ))
    extra=$(( secs % count ))
    for t in $targets; do
        t_secs=$(( share + extra ))
        extra=0
        (( t_secs > 0 )) || t_secs=1
        echo "== fuzzing $t for ${t_secs}s" >&2
        # New inputs go to the first directory, the corpus; seeds are read only.
        mkdir -p "corpus/$t"
        dirs=("corpus/$t")
        if [[ -d "seeds/$t" ]]; then
            dirs+=("seeds/$t")
        fi
        cargo ${toolchain[@]+"${toolchain[@]}"} fuzz run "$t" "${dirs[@]}" -- \
            -max_total_time="$t_secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=64 -print_final_stats=1
    done
fi
