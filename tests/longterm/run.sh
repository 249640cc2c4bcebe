#!/usr/bin/env bash
# Two clusters, two Prometheus replicas, one long-term store (docs/long-term-storage.md).
#
#   demo --cluster alpha ─┐      ┌─ prometheus p1 ─┐  remote_write
#   demo --cluster beta  ─┴──────┴─ prometheus p2 ─┴────────────▶ victoria-metrics
#                              (both scrape both:    (-dedup.minScrapeInterval=1s)
#                               an HA pair)
#
# Two `demo` instances (the real cluster scraper on a simulated cluster at
# --speed 600) are the clusters; Prometheus adds the `cluster` label at
# scrape time as a site does. Both Prometheus servers scrape both and write to
# one VictoriaMetrics (Debian `victoria-metrics`), which deduplicates the
# pair. The demos freeze their clocks after FREEZE (demo --freeze-after), so
# the usage counters end at known values; then tests/longterm/check.py asserts:
# `report` (sreport layout, per cluster/account/user) is the same on
# VictoriaMetrics and on each Prometheus and equal to the counters; the HA
# pair is stored once; every dashboard panel query, per cluster, has data on
# every backend. Alpha's scraper is stopped before the checks, so the store
# holds Prometheus' staleness markers for it. ~1.5 minutes.
#
# Needs prometheus, promtool (Debian `prometheus`), victoria-metrics (Debian
# `victoria-metrics`), python3. Free ports and a temp directory only; every
# port is checked to be held by the process we started.
set -euo pipefail
cd "$(dirname "$0")/../.."
E2E_TAG=longterm
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh

for b in prometheus promtool victoria-metrics ss; do
	command -v "$b" >/dev/null || die "$b not installed (apt-get install prometheus victoria-metrics iproute2)"
done
FREEZE=${FREEZE:-40}
WORK=$(mktemp -d /tmp/longterm.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

BIN=${DEMO_BIN:-}
if [ -z "$BIN" ]; then
	cargo build --locked --bin slurm-gpu-exporter
	BIN=target/debug/slurm-gpu-exporter
fi

read -r ALPHA BETA P1 P2 VM DEAD P3 <<<"$(free_ports 7)"

for c in alpha beta; do
	port=$ALPHA; [ "$c" = beta ] && port=$BETA
	"$BIN" demo --web.listen-address "127.0.0.1:$port" --speed 600 --freeze-after "${FREEZE}s" \
		--poll-interval 1s --collect-interval 1s >"$WORK/demo-$c.log" 2>&1 &
	PIDS+=($!)
	eval "PID_$c=$!"
done

victoria-metrics -storageDataPath="$WORK/vm" -httpListenAddr="127.0.0.1:$VM" \
	-retentionPeriod=1y -dedup.minScrapeInterval=1s -loggerLevel=WARN >"$WORK/vm.log" 2>&1 &
PIDS+=($!)
PID_vm=$!

mkdir -p "$WORK/rules"
for f in alerts/*.yaml; do
	# The shipped rules; group intervals shortened to the scrape interval (as tests/demo/run.sh).
	sed -E 's/^([[:space:]]*)interval:[[:space:]]*[0-9]+[smhd]/\1interval: 1s/' "$f" >"$WORK/rules/$(basename "$f")"
done
for r in 1 2; do
	port=$P1; [ "$r" = 2 ] && port=$P2
	# The HA pair: identical scrape configs; each replica's external label
	# `prometheus_replica` is dropped on remote_write, so both write the same
	# series and the store keeps one sample per series per second.
	cat >"$WORK/prometheus-$r.yml" <<CONF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
  external_labels: {prometheus_replica: p$r}
rule_files:
  - $WORK/rules/*.yaml
scrape_configs:
  - job_name: slurm-gpu-exporter-cluster
    static_configs:
      - {targets: ["127.0.0.1:$ALPHA"], labels: {cluster: alpha}}
      - {targets: ["127.0.0.1:$BETA"], labels: {cluster: beta}}
  - job_name: slurm-gpu-exporter-node
    static_configs:
      - {targets: ["127.0.0.1:$DEAD"], labels: {cluster: alpha, node: gpu-node04}}
      - {targets: ["127.0.0.1:$DEAD"], labels: {cluster: beta, node: gpu-node04}}
remote_write:
  - url: http://127.0.0.1:$VM/api/v1/write
    queue_config: {batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}
    write_relabel_configs:
      - {action: labeldrop, regex: prometheus_replica}
CONF
	promtool check config "$WORK/prometheus-$r.yml" >/dev/null
	prometheus --config.file="$WORK/prometheus-$r.yml" --storage.tsdb.path="$WORK/prom-$r" \
		--web.listen-address="127.0.0.1:$port" >"$WORK/prometheus-$r.log" 2>&1 &
	PIDS+=($!)
	eval "PID_p$r=$!"
done

# Two cluster-scraper replicas of one cluster, as Prometheus would see them
# (the same counters under two `instance` labels): `report` must count once.
cat >"$WORK/prometheus-3.yml" <<CONF
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: slurm-gpu-exporter-cluster
    static_configs:
      - {targets: ["127.0.0.1:$BETA"], labels: {cluster: beta, instance: scraper-a}}
      - {targets: ["127.0.0.1:$BETA"], labels: {cluster: beta, instance: scraper-b}}
CONF
promtool check config "$WORK/prometheus-3.yml" >/dev/null
prometheus --config.file="$WORK/prometheus-3.yml" --storage.tsdb.path="$WORK/prom-3" \
	--web.listen-address="127.0.0.1:$P3" >"$WORK/prometheus-3.log" 2>&1 &
PIDS+=($!)
PID_p3=$!

wait_until() {
	local what=$1 url=$2 i
	for i in $(seq 1 120); do
		curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
		sleep 0.5
	done
	die "$what did not answer at $url"
}
wait_until "demo alpha" "http://127.0.0.1:$ALPHA/readyz"
wait_until "demo beta" "http://127.0.0.1:$BETA/readyz"
wait_until "victoria-metrics" "http://127.0.0.1:$VM/health"
wait_until "prometheus p1" "http://127.0.0.1:$P1/-/ready"
wait_until "prometheus p2" "http://127.0.0.1:$P2/-/ready"
wait_until "prometheus p3" "http://127.0.0.1:$P3/-/ready"
# Nothing listens on DEAD (a powered-off node's agent, as in tests/demo/run.sh).
# An answer from somebody else's process on a port we picked never counts.
expect_port_owner "demo alpha" "$ALPHA" "$PID_alpha"
expect_port_owner "demo beta" "$BETA" "$PID_beta"
expect_port_owner victoria-metrics "$VM" "$PID_vm"
expect_port_owner "prometheus p1" "$P1" "$PID_p1"
expect_port_owner "prometheus p2" "$P2" "$PID_p2"
expect_port_owner "prometheus p3" "$P3" "$PID_p3"

if ! python3 tests/longterm/check.py --bin "$BIN" --freeze "$FREEZE" \
	--exporter "alpha=http://127.0.0.1:$ALPHA" --exporter "beta=http://127.0.0.1:$BETA" \
	--stop-alpha-pid "$PID_alpha" \
	--prometheus "p1=http://127.0.0.1:$P1" --prometheus "p2=http://127.0.0.1:$P2" \
	--two-scrapers "http://127.0.0.1:$P3" \
	--victoria-metrics "http://127.0.0.1:$VM" --dashboards dashboards --work "$WORK"; then
	tail_logs "$WORK/vm.log" "$WORK/prometheus-1.log" "$WORK/demo-alpha.log" || true
	exit 1
fi
