#!/usr/bin/env bash
# Spawn to result in two builds of the runtime bench, run alternately: the
# default link (a position-independent executable, PIE) and the same code
# linked with -no-pie. Each run prints its floor (re-execute the binary,
# say hello over TCP, exit) beside it, so the two builds' floors compare too.
#
#   benches/link_modes.sh [ROUNDS]     # ROUNDS runs of each, default 3
#
# Every spawn re-executes the program, and the dynamic loader of a PIE must
# write the executable's relocations into fresh copies of its relocated
# pages in every new process; a program linked without PIE has none to
# write (README, "Faster spawns: linking without PIE").
#
# The no-PIE build is built with --target, so the flag reaches the bench's
# link and not the build scripts and procedural macros, which are shared
# libraries; it lands under the same target directory, in its own
# subdirectory (target/<host triple>/release).
set -euo pipefail

rounds="${1:-3}"
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [ROUNDS]" >&2
    exit 2
fi
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
# The bench executable cargo built (its path comes from cargo's JSON output).
build() {
    cargo bench --bench runtime --no-run --message-format=json "$@" \
        | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1
}
pie=$(build)
flags_var="CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$host")_RUSTFLAGS"
nopie=$(export "$flags_var=-C link-arg=-no-pie" && build --target "$host")
for exe in "$pie" "$nopie"; do
    if [[ ! -x "$exe" ]]; then
        echo "cargo did not report the bench executable" >&2
        exit 1
    fi
done

for ((i = 1; i <= rounds; i++)); do
    for mode in pie nopie; do
        exe=${!mode}
        echo "== round $i: $mode"
        "$exe" spawn | grep -E '^(1 actor|floor)'
    done
done
