#!/usr/bin/env bash
# Load on slurmctld, measured live (a benchmark, not a test): RPCs per hour that the
# cluster scraper causes at a 30 s poll interval, against a CLI-based exporter that
# runs `squeue --json`, `sinfo --json`, `sshare -a -l` and `sdiag` once per 30 s scrape.
#
#   benches/slurmctld_load.sh [RELEASE [MINUTES [CLI_SCRAPES]]]    (root; default 26.05 10 5)
#
# Brings up the e2e rig (tests/e2e/rig.sh: job mix, Slurm of RELEASE), then counts
# slurmctld's own per-user RPC statistics (sdiag, reset with `sdiag -r` before each
# side): the exporter's token belongs to the user `sge-exporter`, the CLI runs as
# `sge-cli`, so slurmrestd's and the CLI's RPCs are told apart. Prints one table
# (Markdown) with RPCs per hour for each side, the ratio, and the per-type counts.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
E2E_TAG=slurmctld-load
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh
# shellcheck source=tests/e2e/rig.sh
. tests/e2e/rig.sh

RELEASE=${1:-26.05}
MINUTES=${2:-10}
CLI_SCRAPES=${3:-5}
# RPC counts do not depend on the build profile: the debug build will do.
BIN=${E2E_EXPORTER_BIN:-$ROOT/target/debug/slurm-gpu-exporter}
[[ -x $BIN ]] || cargo build --locked --bin slurm-gpu-exporter
TOP=$(mktemp -d /tmp/sge-load.XXXXXX)
chmod 755 "$TOP"
read -r P_EXPORTER P_MYSQL P_CTLD P_SLURMD P_DBD P_REST P_PHANTOM <<<"$(free_ports 7)"
export E2E_MYSQL_PORT=$P_MYSQL E2E_SLURMCTLD_PORT=$P_CTLD E2E_SLURMD_PORT=$P_SLURMD \
	E2E_SLURMDBD_PORT=$P_DBD E2E_SLURMRESTD_PORT=$P_REST E2E_PHANTOM_PORT=$P_PHANTOM
EXPORTER_PID=""
cleanup() {
	set +e
	[[ -n $EXPORTER_PID ]] && kill "$EXPORTER_PID" 2>/dev/null && wait "$EXPORTER_PID" 2>/dev/null
	rig_down >"$TOP/rig-down.log" 2>&1
}
trap cleanup EXIT

rig_up "$RELEASE"
rig_jobmix
for u in sge-exporter sge-cli; do
	if [[ -n $CHROOT ]]; then
		chroot "$CHROOT" sh -c "getent passwd $u >/dev/null || useradd --system --user-group --no-create-home $u"
	else
		getent passwd "$u" >/dev/null || useradd --system --user-group --no-create-home "$u"
	fi
done
tok=$(scontrol token lifespan=86400 username=sge-exporter)
printf '%s\n' "${tok#SLURM_JWT=}" >"$TOP/exporter-token"
chmod 600 "$TOP/exporter-token"

# rpcs USER -> "count<TAB>total_time_us<TAB>type=count,..." from sdiag's per-user and
# per-type tables (slurmctld's time spent in that user's RPCs, microseconds). The
# per-type table is for everyone, so each side is measured alone.
rpcs_of() {
	sdiag | awk -v u="$1" '
		/^Remote Procedure Call statistics by message type/ { sec = "type"; next }
		/^Remote Procedure Call statistics by user/ { sec = "user"; next }
		/^Pending RPC statistics/ { sec = "" }
		sec == "user" && $1 == u { for (i = 2; i <= NF; i++) { split($i, a, ":"); if (a[1] == "count") n = a[2]; if (a[1] == "total_time") us = a[2] } }
		sec == "type" && $1 ~ /^[A-Z_]+$/ { for (i = 2; i <= NF; i++) if ($i ~ /^count:/) { split($i, a, ":"); if (a[2] > 0) { t = t sep $1 "=" a[2]; sep = "," } } }
		END { printf "%d\t%d\t%s\n", n, us, t }'
}

log "exporter: $MINUTES min at --poll-interval 30s as user sge-exporter"
sdiag -r >/dev/null
"$BIN" cluster --slurmrestd-url "$SLURMRESTD_URL" --slurmrestd-token-file "$TOP/exporter-token" \
	--slurmrestd-user-name sge-exporter --poll-interval 30s --usage-state-file "$TOP/usage.json" \
	--web.listen-address "127.0.0.1:$P_EXPORTER" >"$TOP/exporter.log" 2>&1 &
EXPORTER_PID=$!
sleep $((MINUTES * 60))
IFS=$'\t' read -r exp_n exp_us exp_types <<<"$(rpcs_of sge-exporter)"
polls=$(curl -sf "http://127.0.0.1:$P_EXPORTER/metrics" | awk '/^slurm_exporter_polls_total /{print $2}')
kill "$EXPORTER_PID"
wait "$EXPORTER_PID" 2>/dev/null || true
EXPORTER_PID=""

log "CLI exporter: $CLI_SCRAPES scrapes of squeue --json, sinfo --json, sshare -a -l, sdiag as user sge-cli"
sdiag -r >/dev/null
for ((i = 0; i < CLI_SCRAPES; i++)); do
	as_slurm_user sge-cli squeue --json >/dev/null
	as_slurm_user sge-cli sinfo --json >/dev/null
	as_slurm_user sge-cli sshare -a -l >/dev/null
	as_slurm_user sge-cli sdiag >/dev/null
done
IFS=$'\t' read -r cli_n cli_us cli_types <<<"$(rpcs_of sge-cli)"

exp_h=$(awk -v n="$exp_n" -v m="$MINUTES" 'BEGIN { printf "%.0f", n * 60 / m }')
cli_h=$(awk -v n="$cli_n" -v k="$CLI_SCRAPES" 'BEGIN { printf "%.0f", n / k * 120 }')
ratio=$(awk -v a="$exp_h" -v b="$cli_h" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
# slurmctld's time in each side's RPCs, per hour (seconds)
exp_sh=$(awk -v n="$exp_us" -v m="$MINUTES" 'BEGIN { printf "%.2f", n / 1e6 * 60 / m }')
cli_sh=$(awk -v n="$cli_us" -v k="$CLI_SCRAPES" 'BEGIN { printf "%.2f", n / 1e6 / k * 120 }')
tratio=$(awk -v a="$exp_sh" -v b="$cli_sh" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
cat <<EOF

Slurm $E2E_SLURM_RELEASE (slurmrestd $SLURMRESTD_API_VERSION), job mix of tests/e2e/jobmix.sh, 30 s interval:

| client | measured | slurmctld RPCs of its user | RPCs per hour | slurmctld time in them per hour | RPC types in the window, all users (count) |
|---|---|---|---|---|---|
| cluster scraper (slurmrestd, incremental /jobs, conditional /nodes) | $MINUTES min, $polls polls | $exp_n | $exp_h | $exp_sh s | $exp_types |
| CLI exporter (squeue --json, sinfo --json, sshare -a -l, sdiag per scrape) | $CLI_SCRAPES scrapes | $cli_n | $cli_h | $cli_sh s | $cli_types |

Ratio scraper / CLI exporter: $ratio (RPCs), $tratio (slurmctld time)
EOF
