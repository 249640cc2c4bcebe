#!/usr/bin/env bash
# The demo against a real Prometheus: `demo --speed 60` (an hour of cluster
# time a minute) scraped by Prometheus with the shipped recording and alert
# rules; then every panel query of every shipped dashboard must return data,
# and every metric a dashboard or rule names must be emitted by the demo or
# recorded by a rule (tests/demo/prometheus_check.py). No allow-list. ~1.5 minutes.
#
# Needs `prometheus` and `promtool` (Debian `prometheus`; tests/run-all.sh
# installs it) and python3. Uses free ports and a temp directory only.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v prometheus >/dev/null || { echo "prometheus not installed (apt-get install prometheus)"; exit 1; }
WORK=$(mktemp -d /tmp/demo-prometheus.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

BIN=${DEMO_BIN:-}
if [ -z "$BIN" ]; then
	cargo build --locked --bin slurm-gpu-exporter
	BIN=target/debug/slurm-gpu-exporter
fi

DEMO_PORT=$(free_port)
PROM_PORT=$(free_port)
# The agent of gpu-node04 (FUTURE in Slurm: powered off): nothing listens there.
DEAD_PORT=$(free_port)
"$BIN" demo --web.listen-address "127.0.0.1:$DEMO_PORT" --speed 60 \
	--poll-interval 1s --collect-interval 1s >"$WORK/demo.log" 2>&1 &
PIDS+=($!)

mkdir -p "$WORK/rules"
for f in alerts/*.yaml; do
	# The shipped rules; only group intervals (5m for the GPU-hour rules) are
	# shortened to the scrape interval, so the test need not wait 5 minutes.
	sed -E 's/^([[:space:]]*)interval:[[:space:]]*[0-9]+[smhd]/\1interval: 1s/' "$f" >"$WORK/rules/$(basename "$f")"
done
cat >"$WORK/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $WORK/rules/*.yaml
scrape_configs:
  - job_name: slurm-gpu-exporter-demo
    static_configs: [{targets: ["127.0.0.1:$DEMO_PORT"], labels: {cluster: demo}}]
  - job_name: slurm-gpu-exporter-node
    static_configs: [{targets: ["127.0.0.1:$DEAD_PORT"], labels: {cluster: demo, node: gpu-node04}}]
CONF
promtool check config "$WORK/prometheus.yml" >/dev/null
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/data" \
	--web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)

if ! python3 tests/demo/prometheus_check.py --exporter "http://127.0.0.1:$DEMO_PORT" \
	--prometheus "http://127.0.0.1:$PROM_PORT" --dashboards dashboards --rules alerts; then
	echo "--- demo log (last 40 lines)"; tail -40 "$WORK/demo.log"
	echo "--- prometheus log (last 20 lines)"; tail -20 "$WORK/prometheus.log"
	exit 1
fi

# The README's `report` against this Prometheus: the month's GPU-hours per
# account and user, and the budgets.
MONTH=$(date -u +%Y-%m)
"$BIN" report --prometheus "http://127.0.0.1:$PROM_PORT" --month "$MONTH" -T gres/gpu,cpu -t Hours >"$WORK/report.txt"
cat "$WORK/report.txt"
ok=1
for want in "Proper Name" "ai_project" "hpc_project" "gres/gpu" "Budgets for the month" "Used %" "Budget" "Cost (USD)" "Total Cost (USD)"; do
	grep -q -- "$want" "$WORK/report.txt" || { echo "[FAIL] report lacks: $want"; ok=0; }
done
[ "$ok" = 1 ] && echo "[PASS] report prints the month's usage, budgets and cost" || exit 1
# Money: every row's GPU cost is its GPU-seconds × the demo's prices (H100 12.29,
# other GPUs 4.10 per GPU-hour), to the cent and the rounding of Used.
"$BIN" report --prometheus "http://127.0.0.1:$PROM_PORT" --month "$MONTH" -T gres/gpu,gres/gpu:h100 -t Seconds -P >"$WORK/report-seconds.txt"
python3 - "$WORK/report-seconds.txt" <<'PY'
import sys
rows, head = {}, None
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("|")
    if f[0] == "Cluster" and head is None:  # the usage table, not the budget block
        head = f
    elif head and len(f) == len(head):
        rows.setdefault((f[1], f[2]), {})[f[4]] = dict(zip(head, f))
bad = 0
for (acc, user), r in rows.items():
    gpu, h100 = float(r["gres/gpu"]["Used"]), float(r.get("gres/gpu:h100", {}).get("Used", 0))
    want = h100 * 12.29 / 3600 + (gpu - h100) * 4.10 / 3600
    got = float(r["gres/gpu"]["Cost (USD)"])
    if abs(got - want) > 0.006 + 0.5 * 12.29 / 3600 * 2:
        print(f"[FAIL] report cost {acc}/{user}: {got} != usage x price {want:.4f}"); bad = 1
if not bad:
    print(f"[PASS] report cost == GPU-seconds x price for {len(rows)} rows")
sys.exit(bad if rows else 1)
PY
