#!/bin/sh
# The demo at an old commit and at this checkout, alternately (old, new, old, new, ...), each in a
# fresh storage, timed as whole processes by /usr/bin/time. Ratios, not absolute times, are what
# a shared machine can tell (docs/STARTUP.md).
#
#   sh benchmarks/demo_timing.sh [OLD_COMMIT] [PAIRS] [--set KEY=VALUE ...]
#   sh benchmarks/demo_timing.sh 66f46aa 1                          # the whole demo, once each
#   sh benchmarks/demo_timing.sh 66f46aa 1 --set "budgets.values=[480, 720, 960, 1440]"  # a quarter
#
# The old commit runs from a git worktree (/tmp/varscale-timing-OLD) with this checkout's .venv,
# its own modules first on PYTHONPATH. Ray's auth token is private to these runs: concurrent
# local Ray starts on one machine otherwise race on ~/.ray/auth_token (InvalidAuthToken, then
# "The current node timed out during startup").
set -eu
OLD=${1:-66f46aa}
[ $# -gt 0 ] && shift
PAIRS=${1:-1}
[ $# -gt 0 ] && shift
HERE=$(cd "$(dirname "$0")/.." && pwd)
PYTHON="$HERE/.venv/bin/python"
WORKTREE="/tmp/varscale-timing-$OLD"
OUT=${OUT:-/tmp/varscale-demo-timing}
mkdir -p "$OUT"
[ -d "$WORKTREE" ] || git -C "$HERE" worktree add "$WORKTREE" "$OLD"
export RAY_AUTH_TOKEN="${RAY_AUTH_TOKEN:-$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')}"

run() {  # run NAME TREE: one demo in a fresh storage; the log and the time go to $OUT
    name=$1
    tree=$2
    shift 2
    rm -rf "$OUT/$name"
    (cd "$tree" && PYTHONPATH="$tree" /usr/bin/time -f "$name wall %e s, user %U s, system %S s" -a -o "$OUT/times.txt" \
        "$PYTHON" -m orchestration.cli demo studies/smoke.yaml --set "storage=$OUT/$name" "$@" >"$OUT/$name.log" 2>&1) ||
        echo "$name failed (exit $?); see $OUT/$name.log" >>"$OUT/times.txt"
    grep -E "Ray started|token cache|trials:|in [0-9.]+ s$|^test_loss_last +N +images=6" "$OUT/$name.log" >>"$OUT/times.txt" || true
}

pair=1
while [ "$pair" -le "$PAIRS" ]; do
    run "old-$pair" "$WORKTREE" "$@"
    run "new-$pair" "$HERE" "$@"
    pair=$((pair + 1))
done
cat "$OUT/times.txt"
