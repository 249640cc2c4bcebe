#!/usr/bin/env bash
# Fuzz smoke test for CI: builds every target of fuzz/ and runs each for
# SMOKE_SECONDS (default 20) from the committed corpus. New inputs go to a
# scratch directory, so the committed corpora stay as they are. Fails on any
# crash, leak, timeout or out-of-memory.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and, on a stable toolchain,
# RUSTC_BOOTSTRAP=1 for the sanitizer flags (set here).
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
secs=${SMOKE_SECONDS:-20}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build -O
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in $(cargo fuzz list); do
  mkdir -p "$scratch/$t" "$scratch/artifacts/$t"
  echo "=== $t (${secs}s)"
  if cargo fuzz run -O "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$scratch/artifacts/$t/" -print_final_stats=1 2>&1 |
      grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==|SUMMARY|artifact)'; then :; fi
  if [ -n "$(ls -A "$scratch/artifacts/$t")" ]; then
    failed+=("$t")
    mkdir -p "artifacts/$t" && cp "$scratch/artifacts/$t"/* "artifacts/$t/"
    echo "=== FAIL $t: inputs saved under fuzz/artifacts/$t/"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz smoke failed: ${failed[*]}"
  exit 1
fi
echo "fuzz smoke: all targets ran ${secs}s without a failure"
