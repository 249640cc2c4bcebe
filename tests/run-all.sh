#!/usr/bin/env bash
# The whole test suite: the README's second command, and what .ci/run runs.
# Installs what it needs from Debian's packages (as root), then runs format and
# lint gates, the Rust tests (unit, integration, golden + promtool), the
# dashboard/rule/manifest checks, the demo against a real Prometheus with
# every dashboard query, two clusters and an HA Prometheus pair writing into
# VictoriaMetrics (report exact on every backend), a short fuzz run of every parser (cargo-fuzz,
# installed from crates.io if missing), and the live end-to-end test against a
# real Slurm 22.05, 24.11 and 26.05 and a real Prometheus (tests/e2e/run.sh installs
# Slurm, MariaDB, munge; the newer releases go into mmdebstrap chroots).
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
failures=()
step() {
  local name=$1; shift
  echo
  echo "=== $name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1)); echo "=== PASS $name ($((SECONDS - start))s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "=== FAIL $name ($((SECONDS - start))s)"
  fi
}

need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v victoria-metrics >/dev/null || need_apt+=(victoria-metrics)
# libfuzzer-sys compiles libFuzzer (C++).
command -v c++ >/dev/null || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

export REQUIRE_PROMTOOL=1
export REQUIRE_VICTORIA_METRICS=1
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy -D warnings" cargo clippy --all-targets --locked -- -D warnings
step "cargo test" cargo test --all-targets --locked
step "dashboards, rules, manifests (tests/ops/check.sh)" bash tests/ops/check.sh
step "demo + real Prometheus: every dashboard query has data, every named metric emitted (tests/demo/run.sh)" \
  bash tests/demo/run.sh
step "two clusters, HA Prometheus pair, VictoriaMetrics: report and dashboards equal on every backend (tests/longterm/run.sh)" \
  bash tests/longterm/run.sh
step "fuzz smoke: every cargo-fuzz target ${SMOKE_SECONDS:=10}s from its corpus (fuzz/smoke.sh)" \
  env SMOKE_SECONDS="$SMOKE_SECONDS" bash fuzz/smoke.sh
# The same live suite on the three Slurm releases users run: Debian 12's own 22.05 on this
# host, trixie's 24.11 and sid's 26.05 in chroots made with mmdebstrap (tests/e2e/chroot.sh;
# cached under /var/cache/slurm-gpu-exporter/e2e-chroots where the machine keeps it).
for release in 22.05 24.11 26.05; do
  step "live end-to-end: real Slurm $release + real Prometheus (tests/e2e/run.sh $release)" bash tests/e2e/run.sh "$release"
done

echo
echo "Summary: $passed passed, $failed failed"
for f in "${failures[@]}"; do echo "  failed: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
