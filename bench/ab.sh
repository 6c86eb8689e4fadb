#!/usr/bin/env bash
# A/B in one run: one roomcast-load drives two builds' servers, scenario by scenario,
# alternating which goes first so the machine's drift falls on both alike.
#
#   bench/ab.sh A_BIN_DIR B_BIN_DIR OUT.jsonl f2:sse p1:grpc m2:ws ...
#
# A_BIN_DIR / B_BIN_DIR hold roomcast-smol and roomcast-tokio (e.g. a `git worktree` of the
# previous commit built with `cargo build --release -p roomcast-smol -p roomcast-tokio`, and
# this checkout's target/release). Each result line gets "side":"A" or "B"; the markdown rows
# go to stdout.
set -euo pipefail
load="$(dirname "$0")/../target/release/roomcast-load"
[ -x "$load" ] || load="${CARGO_TARGET_DIR:-target}/release/roomcast-load"
a="$1"; b="$2"; out="$3"; shift 3
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
flip=0
for pair in "$@"; do
  scenario="${pair%%:*}"; target="${pair##*:}"
  if [ "$flip" -eq 0 ]; then order="A B"; flip=1; else order="B A"; flip=0; fi
  for side in $order; do
    dir="$a"; [ "$side" = B ] && dir="$b"
    : > "$tmp"
    row="$(timeout 1800 "$load" run "$scenario" --target "$target" --bin-dir "$dir" --json "$tmp" 2>/dev/null | grep '^| [A-Z][0-9] |' || true)"
    echo "$side $row"
    sed "s/^{/{\"side\":\"$side\",/" "$tmp" >> "$out"
  done
done
