#!/usr/bin/env bash
# Soak test of the node agent: scrape /metrics every second for DURATION
# seconds and sample the agent's resident memory every minute.
# Usage: benches/soak.sh [DURATION_S] [OUT_CSV]
# Uses the release binary on the p5-like fixture tree (32 EFA devices, 2,000
# processes of which 490 in two jobs; `node::testkit::write_p5`) and eight
# fake H100s, with collection every second (so each scrape sees a fresh snapshot).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-3600}
OUT=${2:-/tmp/soak-node.csv}
BIN=target/release/slurm-gpu-exporter
[[ -x $BIN ]] || cargo build --release --locked --bin slurm-gpu-exporter
FIXTURE=$(mktemp -d /tmp/soak-p5.XXXXXX)
cargo run --release --locked --quiet --example write_p5_fixture -- "$FIXTURE" 2000
PORT=19399
"$BIN" node --path.procfs "$FIXTURE/proc" --path.sysfs "$FIXTURE/sys" \
	--slurm-node-name soak --gpu.backend fake --collect-interval 1s --web.listen-address 127.0.0.1:$PORT \
	--log.level warn >/tmp/soak-node.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$FIXTURE"' EXIT
sleep 2
rss() { awk '/^VmRSS/{print $2}' /proc/$PID/status; }
echo "elapsed_s,rss_kib,scrapes,failed" >"$OUT"
start=$(date +%s)
scrapes=0
failed=0
next_sample=0
while :; do
	now=$(($(date +%s) - start))
	((now >= DURATION)) && break
	if ((now >= next_sample)); then
		echo "$now,$(rss),$scrapes,$failed" >>"$OUT"
		next_sample=$((next_sample + 60))
	fi
	if curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/metrics"; then
		scrapes=$((scrapes + 1))
	else
		failed=$((failed + 1))
	fi
	sleep 1
done
echo "$DURATION,$(rss),$scrapes,$failed" >>"$OUT"
# Growth is measured from the first sample after a minute of warm-up.
awk -F, 'NR==3{base=$2} NR>1{last=$2; if ($2>max) max=$2} END{
	printf "soak: %d samples, RSS after warm-up %d KiB, final %d KiB, max %d KiB, growth %.2f%%\n",
	NR-1, base, last, max, (last-base)*100/base }' "$OUT"
tail -n1 "$OUT" | awk -F, '{printf "scrapes %d, failed %d\n", $3, $4}'
