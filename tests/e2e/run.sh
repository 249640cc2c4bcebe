#!/usr/bin/env bash
# Live end-to-end test: a real Slurm (slurmctld, slurmd, slurmdbd, slurmrestd,
# MariaDB, munge) from Debian's packages -- 22.05 on this Debian 12 host, 24.11
# (trixie) or 26.05 (sid) in a chroot made by chroot.sh -- the exporter's cluster
# scraper against it, the node agent against a fixture tree, and a real
# Prometheus scraping both with the project's alert and recording rules.
# Checks values against squeue/sinfo/sacct, dashboard queries, alerts, and the
# slurmrestd stop/restart behaviour. Stops everything it started, by pid.
#
# Every port is picked free at run time, and every process we start must be the
# one listening on its port (an answer from somebody else's daemon fails the run).
#
# Usage: tests/e2e/run.sh [22.05|24.11|26.05]   (as root; state under a fresh /tmp dir)
# Env:   E2E_STATE_DIR  keep state/logs there instead of a temp dir
#        E2E_EXPORTER_BIN  exporter binary (default target/debug/slurm-gpu-exporter, built if missing)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
E2E_TAG=e2e
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh

# shellcheck source=tests/e2e/rig.sh
. tests/e2e/rig.sh
RELEASE=${1:-22.05}
rig_suite "$RELEASE" >/dev/null
E2E_TAG=e2e-$RELEASE

TOP=${E2E_STATE_DIR:-$(mktemp -d /tmp/sge-e2e.XXXXXX)}
mkdir -p "$TOP"
chmod 755 "$TOP" # the Slurm daemons run as their own users
STATE=$TOP/slurm
OWN=$TOP/exporter-side
rm -rf "$OWN"
mkdir -p "$OWN/pids" "$OWN/log" "$OWN/rules" "$OWN/prometheus-data"
BIN=${E2E_EXPORTER_BIN:-$ROOT/target/debug/slurm-gpu-exporter}
# ours: exporter, node agent, CPU node agent, a dead agent's port, Prometheus;
# Slurm's: MariaDB, slurmctld, slurmd, slurmdbd, slurmrestd, the never-up nodes' port
read -r P_EXPORTER P_AGENT P_AGENT_CPU P_DEAD P_PROM P_MYSQL P_CTLD P_SLURMD P_DBD P_REST P_PHANTOM <<<"$(free_ports 11)"
EXPORTER=http://127.0.0.1:$P_EXPORTER
NODE_AGENT=http://127.0.0.1:$P_AGENT
PROM=http://127.0.0.1:$P_PROM
FAILED=0

own_start() { # own_start NAME LOG CMD...
	local name=$1 out=$2
	shift 2
	setsid "$@" </dev/null >>"$out" 2>&1 &
	echo $! >"$OWN/pids/$name.pid"
	pid_starttime $! >"$OWN/pids/$name.start" 2>/dev/null || true
	log "started $name pid $!"
}

own_stop() { # own_stop NAME: by recorded pid, only if it is still the same process
	local f=$OWN/pids/$1.pid pid
	[[ -f $f ]] || return 0
	pid=$(<"$f")
	if pid_alive "$pid" && [[ $(pid_starttime "$pid") == "$(cat "$OWN/pids/$1.start" 2>/dev/null)" ]]; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
		pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

cleanup() {
	local rc=$?
	set +e
	if [[ -n ${E2E_PAUSE:-} ]]; then
		# debugging: keep everything running until $TOP/continue exists
		log "E2E_PAUSE: everything still runs; . $STATE/env (PATH=$TOP/bin:\$PATH); touch $TOP/continue to stop"
		while [[ ! -e $TOP/continue ]]; do sleep 2; done
	fi
	for n in prometheus node-agent node-agent-cpu efa-traffic exporter-cluster; do own_stop "$n"; done
	rig_down >"$OWN/log/slurm-down.log" 2>&1
	if [[ $rc -ne 0 || $FAILED -ne 0 ]]; then
		echo "=== e2e failed; logs in $TOP (tails follow)"
		tail_logs "$OWN"/log/*.log "$STATE"/log/slurmctld.log "$STATE"/log/slurmrestd.log
	fi
	exit $((rc != 0 ? rc : FAILED != 0))
}
trap cleanup EXIT

phase() { # phase DESC CMD...: runs a check phase, remembers failure, goes on
	local desc=$1
	shift
	step "$desc"
	if ! "$@"; then
		FAILED=1
		warn "phase failed: $desc"
	fi
}

[[ -x $BIN ]] || cargo build --locked --bin slurm-gpu-exporter
command -v prometheus >/dev/null || die "prometheus not installed (slurm-up.sh installs it)"

export E2E_MYSQL_PORT=$P_MYSQL E2E_SLURMCTLD_PORT=$P_CTLD E2E_SLURMD_PORT=$P_SLURMD \
	E2E_SLURMDBD_PORT=$P_DBD E2E_SLURMRESTD_PORT=$P_REST E2E_PHANTOM_PORT=$P_PHANTOM
step "1/6 Slurm $RELEASE up, the cluster scraper, then the job mix"
rig_up "$RELEASE"
RIG_START=$(date +%s)

step "2/6 exporter: cluster scraper against slurmrestd, node agent against a fixture tree"
# ai_project's GPU budget is spent within seconds; hpc_project's is far away.
cat >"$OWN/budgets.yaml" <<EOF
accounts:
  ai_project:
    gpu_hours: 0.001
  hpc_project:
    gpu_hours: 100000
    cpu_hours: 100000
prices:
  currency: USD
  gpu_hour:
    default: 4.10
  cpu_hour:
    partitions:
      cpu: 0.05
EOF
# The exporter's own copy of the token: the expired-token phase replaces it.
install -m 600 "$SLURMRESTD_TOKEN_FILE" "$OWN/exporter-token"
own_start exporter-cluster "$OWN/log/exporter-cluster.log" "$BIN" cluster \
	--slurmrestd-url "$SLURMRESTD_URL" --slurmrestd-token-file "$OWN/exporter-token" \
	--usage-state-file "$OWN/usage-state.json" --budgets "$OWN/budgets.yaml" \
	--slurmrestd-user-name "$SLURMRESTD_TOKEN_USER" --poll-interval 2s --slurmrestd-timeout 10s \
	--web.listen-address "127.0.0.1:$P_EXPORTER"
# The scraper runs before the first job, so its usage counters hold every GPU-second
# slurmdbd will report (the sreport phase at the end compares them).
wait_until "cluster scraper /readyz" 60 "" "$OWN/log/exporter-cluster.log" -- curl -sf "$EXPORTER/readyz"
rig_jobmix
# GPU -> job mapping files as Slinky's prolog writes them (one file per GPU
# index holding the job id), from the live jobs' GPU indices (scontrol -d).
mkdir -p "$OWN/job-mapping"
scontrol -d show job | awk '/^JobId=/{split($1,a,"="); id=a[2]} /GRES=gpu/{ if (match($0,/IDX:[0-9,-]+/)) { s=substr($0,RSTART+4,RLENGTH-4); n=split(s,parts,","); for(i=1;i<=n;i++){ if (split(parts[i],r,"-")==2) {for(g=r[1];g<=r[2];g++) print g, id} else print parts[i], id } } }' |
	while read -r gpu job; do echo "$job" >"$OWN/job-mapping/$gpu"; done
log "job mapping: $(cd "$OWN/job-mapping" && grep -H . ./* | tr '\n' ' ')"
# Idle GPUs for the idle-jobs phase: the GPUs of train-llama (ai_project) and of
# md-gromacs (hpc_project, exempted there) report 0 % on the fake backend.
# shellcheck disable=SC1091
. "$TOP/slurm/jobmix.env"
IDLE_GPUS=$(cd "$OWN/job-mapping" && grep -lxE "$JOB_TRAIN_LLAMA|$JOB_MD_GROMACS" ./* | sed 's|^\./||' | sort -n | paste -sd, -)
[[ -n $IDLE_GPUS ]] || die "no GPU indices for jobs $JOB_TRAIN_LLAMA and $JOB_MD_GROMACS"
log "idle GPUs (jobs $JOB_TRAIN_LLAMA, $JOB_MD_GROMACS): $IDLE_GPUS"
# The node agent reads a copy of the p4dn fixture tree whose EFA counters a
# background loop advances (traffic, drops, retransmit timeouts, unresponsive
# and impaired remotes on one device), with eight fake H100s carrying faults
# (a lost GPU, XIDs, ECC, row remap, thermal slowdown).
cp -r tests/fixtures/node/p4dn-cgroupv1 "$OWN/node-tree"
# The live jobs' processes as the node agent would see them under cgroup v1
# (this Slurm runs without cgroup plugins): one rank per running GPU job,
# the lowest-numbered job without `ulimit -l unlimited`.
first=1
squeue -h -t R -o '%i %u %a %b %N' | while read -r id user account _ nodes; do
	scontrol -d show job "$id" | grep -q 'GRES=gpu' || continue
	d=$OWN/node-tree/proc/$((50000 + id))
	mkdir -p "$d"
	uid=$(id -u "$user")
	sed "s|job_101|job_$id|; s|uid_1001|uid_$uid|" tests/fixtures/node/p4dn-cgroupv1/proc/3001/cgroup >"$d/cgroup"
	echo python >"$d/comm"
	printf 'SLURM_JOB_ID=%s\0SLURM_JOB_USER=%s\0SLURM_JOB_ACCOUNT=%s\0' "$id" "$user" "$account" >"$d/environ"
	if [[ $first == 1 ]]; then
		sed -E 's/^(Max locked memory +)unlimited +unlimited/\165536                65536/' \
			tests/fixtures/node/p4dn-cgroupv1/proc/3001/limits >"$d/limits"
		first=0
	else
		cp tests/fixtures/node/p4dn-cgroupv1/proc/3001/limits "$d/limits"
	fi
done
log "job processes in the node tree: $(ls "$OWN/node-tree/proc" | grep -c '^5[0-9]*$')"
EFA_PORT=$(ls -d "$OWN"/node-tree/sys/class/infiniband/*/ports/1/hw_counters | head -n1)
own_start efa-traffic "$OWN/log/efa-traffic.log" bash -c '
	while sleep 1; do
		for c in rdma_read_bytes rdma_write_bytes tx_bytes rx_bytes rx_drops retrans_timeout_events unresponsive_remote_events impaired_remote_conn_events; do
			f="$0/$c"; [ -f "$f" ] || continue
			v=$(cat "$f"); echo $((v + 4096)) >"$f.tmp" && mv "$f.tmp" "$f"
		done
	done' "$EFA_PORT"
own_start node-agent "$OWN/log/node-agent.log" "$BIN" node \
	--path.procfs "$OWN/node-tree/proc" --path.sysfs "$OWN/node-tree/sys" \
	--slurm-node-name "$E2E_NODE" --collect-interval 2s --gpu.backend fake-faulty --gpu.fake-idle "$IDLE_GPUS" \
	--collector.jobs.mapping-dir "$OWN/job-mapping" \
	--web.listen-address "127.0.0.1:$P_AGENT"
# A CPU node whose agent finds no NVML library: its GPU collector reports down.
own_start node-agent-cpu "$OWN/log/node-agent-cpu.log" "$BIN" node \
	--path.procfs tests/fixtures/node/sluid-cgroupv2/proc --path.sysfs tests/fixtures/node/sluid-cgroupv2/sys \
	--slurm-node-name cpu-node01 --collect-interval 2s --gpu.backend nvml \
	--nvml.library "$OWN/no-such-libnvidia-ml.so.1" --web.listen-address "127.0.0.1:$P_AGENT_CPU"
wait_until "node agent /readyz" 60 "" "$OWN/log/node-agent.log" -- curl -sf "$NODE_AGENT/readyz"
expect_port_owner exporter-cluster "$P_EXPORTER" "$(<"$OWN/pids/exporter-cluster.pid")"
expect_port_owner node-agent "$P_AGENT" "$(<"$OWN/pids/node-agent.pid")"
wait_until "CPU node agent /readyz" 60 "" "$OWN/log/node-agent-cpu.log" -- curl -sf "http://127.0.0.1:$P_AGENT_CPU/readyz"
expect_port_owner node-agent-cpu "$P_AGENT_CPU" "$(<"$OWN/pids/node-agent-cpu.pid")"

step "3/6 Prometheus with the project's rules ('for:' shortened to 5s, group intervals to 2s)"
for f in alerts/*.yaml; do
	# Same expressions; only the pending period is shortened so the test does not wait 30 minutes.
	sed -E -e 's/^([[:space:]]*)for:[[:space:]]*[0-9]+[smhd]/\1for: 5s/' \
		-e 's/^([[:space:]]*)interval:[[:space:]]*[0-9]+[smhd]/\1interval: 2s/' "$f" >"$OWN/rules/$(basename "$f")"
done
# Slurm 25.11+ serve their own OpenMetrics on the slurmctld port: scraped into the same
# Prometheus, as Slinky does, so that the checks run with both sets of series present.
NATIVE_SCRAPE=""
if ((E2E_SLURM_MM >= 2511)); then
	NATIVE_SCRAPE="  - job_name: slurm-native
    static_configs:"
	for ep in jobs nodes partitions scheduler jobs-users-accts; do
		NATIVE_SCRAPE+="
      - {targets: [\"127.0.0.1:$E2E_SLURMCTLD_PORT\"], labels: {cluster: \"$E2E_CLUSTER\", __metrics_path__: \"/metrics/$ep\", endpoint: \"$ep\"}}"
	done
fi
cat >"$OWN/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files:
  - $OWN/rules/*.yaml
scrape_configs:
  - job_name: slurm-gpu-exporter-cluster
    static_configs: [{targets: ["127.0.0.1:$P_EXPORTER"], labels: {cluster: "$E2E_CLUSTER"}}]
$NATIVE_SCRAPE
  - job_name: slurm-gpu-exporter-node
    # $P_DEAD: a node whose agent died (nothing listens there).
    static_configs: [{targets: ["127.0.0.1:$P_AGENT", "127.0.0.1:$P_AGENT_CPU", "127.0.0.1:$P_DEAD"], labels: {cluster: "$E2E_CLUSTER"}}]
EOF
promtool check config "$OWN/prometheus.yml" >"$OWN/log/promtool-config.log" 2>&1 || { cat "$OWN/log/promtool-config.log"; die "bad prometheus config"; }
own_start prometheus "$OWN/log/prometheus.log" prometheus --config.file="$OWN/prometheus.yml" \
	--storage.tsdb.path="$OWN/prometheus-data" --web.listen-address="127.0.0.1:$P_PROM"
wait_until "prometheus ready" 60 "" "$OWN/log/prometheus.log" -- curl -sf "$PROM/-/ready"
expect_port_owner prometheus "$P_PROM" "$(<"$OWN/pids/prometheus.pid")"

phase "4/6 exporter values equal squeue/sinfo/sacct" python3 tests/e2e/check.py equality --release "$RELEASE" --exporter "$EXPORTER"
if [[ -n ${E2E_RECORD_DIR:-} ]]; then
	# fixtures for tests/fixtures/live/ (see tests/e2e/README.md)
	python3 tests/e2e/record.py "$E2E_RECORD_DIR/$E2E_SLURM_RELEASE"
fi
phase "4a/6 association and QOS limits equal sacctmgr" python3 tests/e2e/check.py limits --release "$RELEASE" --exporter "$EXPORTER"
phase "4b/6 GPU-hour counters equal sacct over a window" python3 tests/e2e/check.py usage --release "$RELEASE" --exporter "$EXPORTER" --prometheus "$PROM"

if ((E2E_SLURM_MM >= 2511)); then
	phase "4c/6 exporter equals Slurm's own OpenMetrics in the same Prometheus" \
		python3 tests/e2e/check.py native --release "$RELEASE" --prometheus "$PROM"
fi

# restart_slurm_daemon NAME CMD...: start it again as slurm-up.sh would, and record
# it in slurm-up's pid files so that slurm-down.sh stops it as its own.
restart_slurm_daemon() {
	local name=$1 pid
	shift
	(cd "$STATE" && E2E_SLURM_DAEMON_OF=$STATE exec setsid "${IN[@]}" "$@") </dev/null >>"$STATE/log/$name.stdout" 2>&1 &
	pid=$!
	echo "$pid" >"$STATE/run/pids/$name.pid"
	pid_starttime "$pid" >"$STATE/run/pids/$name.start"
	log "restarted $name pid $pid"
	LAST_PID=$pid
}

step "5/6 slurmrestd, slurmctld and the token: stopped, expired, restored"
kill -TERM "$E2E_PID_SLURMRESTD"
phase "slurmrestd down" python3 tests/e2e/check.py restd-down --release "$RELEASE" --exporter "$EXPORTER" --prometheus "$PROM"
restart_slurm_daemon slurmrestd env SLURM_JWT=daemon SLURM_CONF="$SLURM_CONF" \
	/usr/sbin/slurmrestd -u slurmrestd -g slurmrestd -a rest_auth/jwt "127.0.0.1:$E2E_SLURMRESTD_PORT"
phase "slurmrestd up again" python3 tests/e2e/check.py restd-up --release "$RELEASE" --exporter "$EXPORTER" --prometheus "$PROM"
expect_port_owner slurmrestd "$E2E_SLURMRESTD_PORT" "$LAST_PID"

log "stopping slurmctld (pid $E2E_PID_SLURMCTLD); slurmrestd stays up"
kill -TERM "$E2E_PID_SLURMCTLD"
for _ in $(seq 1 100); do pid_alive "$E2E_PID_SLURMCTLD" || break; sleep 0.2; done
phase "slurmctld down" python3 tests/e2e/check.py ctld-down --release "$RELEASE" --exporter "$EXPORTER"
# -D without -i/-c: it reloads its saved state, so the jobs survive
restart_slurm_daemon slurmctld env SLURM_CONF="$SLURM_CONF" /usr/sbin/slurmctld -D
wait_until "slurmctld back" 90 "$LAST_PID" "$STATE/log/slurmctld.log" -- sh -c 'scontrol ping | grep -q "is UP"'
expect_port_owner slurmctld "$E2E_SLURMCTLD_PORT" "$LAST_PID"
phase "slurmctld up again: values equal the CLI" python3 tests/e2e/check.py ctld-up --release "$RELEASE" --exporter "$EXPORTER"

log "replacing the exporter's token by an expired one"
expired=$(scontrol token lifespan=1 username="$SLURMRESTD_TOKEN_USER")
sleep 3
printf '%s\n' "${expired#SLURM_JWT=}" >"$OWN/exporter-token.new" && mv "$OWN/exporter-token.new" "$OWN/exporter-token"
phase "expired token" python3 tests/e2e/check.py token-expired --release "$RELEASE" --exporter "$EXPORTER"
install -m 600 "$SLURMRESTD_TOKEN_FILE" "$OWN/exporter-token.new" && mv "$OWN/exporter-token.new" "$OWN/exporter-token"
phase "renewed token" python3 tests/e2e/check.py token-renewed --release "$RELEASE" --exporter "$EXPORTER"
if grep -qF "${expired#SLURM_JWT=}" "$OWN/log/exporter-cluster.log" || grep -qF "$(cat "$SLURMRESTD_TOKEN_FILE")" "$OWN/log/exporter-cluster.log"; then
	FAILED=1
	warn "a token appears in the exporter's log"
else
	log "no token in the exporter's log"
fi

# An up GPU node drained by an admin (jobs keep running): the drain alert's case.
scontrol update nodename="$E2E_NODE" state=drain reason="e2e: drained for maintenance"
# Give rules a few evaluations and rate() windows some samples.
sleep 25
phase "6/6 Prometheus: targets, every dashboard query, alerts" python3 tests/e2e/check.py prometheus --release "$RELEASE" \
	--prometheus "$PROM" --dashboards dashboards --dead-targets "127.0.0.1:$P_DEAD" \
	--firing "$(cat tests/e2e/expected-firing.txt | grep -v '^#' | paste -sd, -)" \
	--silent "$(cat tests/e2e/expected-silent.txt | grep -v '^#' | paste -sd, -)" \
	--allow-empty "$(grep -v '^#' tests/e2e/allow-empty-panels.txt | sed -n -e '/^[0-9][0-9.]*: /!p' -e "s/^$RELEASE: //p" | paste -sd, -)"


step "6a/7 idle GPU jobs: warned, then cancelled through slurmrestd; the exempt account's job is not"
# Before 6b: the GrpTRESMins=0 that 6b sets makes Slurm itself end ai_project's running jobs.
# train-llama (ai_project) and md-gromacs (hpc_project, exempt) hold only idle GPUs.
IDLE=("$BIN" idle-jobs --prometheus "$PROM" --slurmrestd-url "$SLURMRESTD_URL"
	--slurmrestd-token-file "$SLURMRESTD_TOKEN_FILE" --slurmrestd-user-name "$SLURMRESTD_TOKEN_USER"
	--threshold 0.05 --idle-for 20s --grace 6s --exempt-accounts hpc_project
	--state-file "$OWN/idle-state.json" --audit-log "$OWN/idle-audit.log")
job_state_of() { squeue -h -j "$1" -t all -o %T 2>/dev/null | head -n1; }
idle_line() { # idle_line OUTPUT JOB ACTION DRY_RUN: the JSON line of that decision is there
	python3 -c 'import json,sys
out, job, action, dry = sys.argv[1:]
lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
sys.exit(0 if any(l["job_id"] == int(job) and l["action"] == action and l["dry_run"] == (dry == "true") for l in lines) else 1)' "$@"
}
idle_check() {
	local out rc=0
	if ((E2E_SLURM_MM < 2411)); then
		out=$("${IDLE[@]}" --apply 2>&1) && { echo "$out"; echo "FAIL: idle-jobs acted through v0.0.38"; return 1; }
		grep -q 'v0.0.42 or later' <<<"$out" || { echo "$out"; echo "FAIL: no refusal message"; return 1; }
		[[ $(job_state_of "$JOB_TRAIN_LLAMA") == RUNNING ]] || { echo "FAIL: job $JOB_TRAIN_LLAMA not running"; return 1; }
		echo "PASS: idle-jobs refuses API v0.0.38 and cancels nothing"
		return 0
	fi
	out=$("${IDLE[@]}" 2>&1) || rc=$?
	echo "$out"
	((rc == 0)) && idle_line "$out" "$JOB_TRAIN_LLAMA" warn true && idle_line "$out" "$JOB_MD_GROMACS" exempt true ||
		{ echo "FAIL: dry run: no warn for $JOB_TRAIN_LLAMA or no exempt for $JOB_MD_GROMACS"; return 1; }
	[[ ! -e $OWN/idle-state.json ]] || { echo "FAIL: the dry run wrote the state file"; return 1; }
	echo "PASS: dry run would warn job $JOB_TRAIN_LLAMA, exempts job $JOB_MD_GROMACS, writes nothing"
	out=$("${IDLE[@]}" --apply 2>&1) || { echo "$out"; echo "FAIL: first --apply"; return 1; }
	echo "$out"
	idle_line "$out" "$JOB_TRAIN_LLAMA" warn false || { echo "FAIL: no warning"; return 1; }
	[[ $(job_state_of "$JOB_TRAIN_LLAMA") == RUNNING ]] || { echo "FAIL: warned job not running"; return 1; }
	echo "PASS: --apply warned job $JOB_TRAIN_LLAMA; it still runs (grace 6s)"
	sleep 7
	out=$("${IDLE[@]}" 2>&1) || { echo "$out"; echo "FAIL: dry run after the grace"; return 1; }
	echo "$out"
	idle_line "$out" "$JOB_TRAIN_LLAMA" cancel true || { echo "FAIL: dry run shows no cancel"; return 1; }
	sleep 2
	[[ $(job_state_of "$JOB_TRAIN_LLAMA") == RUNNING ]] || { echo "FAIL: the dry run cancelled job $JOB_TRAIN_LLAMA"; return 1; }
	echo "PASS: the dry run past the grace would cancel job $JOB_TRAIN_LLAMA and cancels nothing"
	out=$("${IDLE[@]}" --apply 2>&1) || { echo "$out"; echo "FAIL: second --apply"; return 1; }
	echo "$out"
	idle_line "$out" "$JOB_TRAIN_LLAMA" cancel false || { echo "FAIL: no cancel"; return 1; }
	local st=""
	for _ in $(seq 1 30); do
		st=$(sacct -n -X -P -j "$JOB_TRAIN_LLAMA" -o State | head -n1 | cut -d' ' -f1)
		[[ $st == CANCELLED ]] && break
		sleep 1
	done
	[[ $st == CANCELLED ]] || { echo "FAIL: job $JOB_TRAIN_LLAMA is $st, not CANCELLED"; return 1; }
	echo "PASS: job $JOB_TRAIN_LLAMA (ai_project, GPUs idle) CANCELLED by idle-jobs (sacct)"
	[[ $(job_state_of "$JOB_MD_GROMACS") == RUNNING ]] || { echo "FAIL: exempt job $JOB_MD_GROMACS is $(job_state_of "$JOB_MD_GROMACS")"; return 1; }
	python3 - "$OWN/idle-audit.log" "$JOB_TRAIN_LLAMA" "$JOB_MD_GROMACS" <<'PY' || return 1
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
real = [(l["job_id"], l["action"]) for l in lines if not l["dry_run"]]
want = [(int(sys.argv[2]), "warn"), (int(sys.argv[2]), "cancel")]
ok = [r for r in real if r[0] == int(sys.argv[2])] == want and not [r for r in real if r[0] == int(sys.argv[3])]
for l in lines:
    assert l["actor"] and l["reason"] and l["account"] and "max_activity" in l, l
print(("PASS" if ok else "FAIL") + ": audit log actions " + repr(real))
sys.exit(0 if ok else 1)
PY
	echo "PASS: exempt job $JOB_MD_GROMACS (hpc_project) still RUNNING"
	if grep -qF "$(cat "$SLURMRESTD_TOKEN_FILE")" "$OWN/idle-audit.log"; then echo "FAIL: token in the audit log"; return 1; fi
	# The cancelled job's efficiency summary from the same Prometheus: its GPUs idle throughout.
	out=$("$BIN" job-report "$JOB_TRAIN_LLAMA" --prometheus "$PROM" --lookback 1h --step 2s --format json 2>&1) || { echo "$out"; echo "FAIL: job-report"; return 1; }
	python3 -c 'import json,sys
j = json.loads(sys.argv[1]); g = j["gpus"]
ok = len(g) == 2 and all(x["activity_peak"] == 0 and x["idle_seconds"] > 30 and x["energy_joules"] is not None for x in g) and j["account"] == "ai_project"
print(("PASS" if ok else "FAIL") + ": job-report %s: %s" % (j["job_id"], [(x["gpu"], x["activity_source"], x["activity_peak"], x["idle_seconds"]) for x in g]))
sys.exit(0 if ok else 1)' "$out" || return 1
}
phase "idle-jobs: warn, grace, cancel; exempt account kept; dry run cancels nothing" idle_check

step "6b/7 budgets enforced through Slurm: budgets apply, then Slurm holds the account's next GPU job"
# The budgets file gives ai_project 0.001 GPU-hours (its budget alert fired above): as
# GrpTRESMins that is gres/gpu=0, which Slurm enforces (AccountingStorageEnforce=limits).
APPLY=("$BIN" budgets apply --budgets "$OWN/budgets.yaml" --slurmrestd-url "$SLURMRESTD_URL"
	--slurmrestd-token-file "$SLURMRESTD_TOKEN_FILE" --slurmrestd-user-name "$SLURMRESTD_TOKEN_USER")
enforce_check() {
	local out rc=0 job st r
	if ((E2E_SLURM_MM < 2411)); then
		# v0.0.38 is not written to: refused, nothing changes
		out=$("${APPLY[@]}" --apply 2>&1) && { echo "$out"; echo "FAIL: budgets apply wrote through v0.0.38"; return 1; }
		sacctmgr -n -P show assoc account=ai_project user= format=grptresmins | grep -q 'gres/gpu=0' &&
			{ echo "FAIL: limit changed"; return 1; }
		echo "PASS: budgets apply refuses API v0.0.38 and writes nothing: $(tail -n1 <<<"$out")"
		return 0
	fi
	out=$("${APPLY[@]}" 2>&1) || rc=$?
	echo "$out"
	((rc == 0)) && grep -q 'GrpTRESMins 100000 -> 0 account=ai_project tres=gres/gpu dry_run=true' <<<"$out" || { echo "FAIL: dry run"; return 1; }
	sacctmgr -n -P show assoc account=ai_project user= format=grptresmins | grep -q 'gres/gpu=0' &&
		{ echo "FAIL: the dry run wrote"; return 1; }
	echo "PASS: dry run shows the change and writes nothing"
	"${APPLY[@]}" --apply || { echo "FAIL: --apply"; return 1; }
	sacctmgr -n -P show assoc account=ai_project user= format=grptresmins | grep -q 'gres/gpu=0' ||
		{ echo "FAIL: sacctmgr does not show GrpTRESMins gres/gpu=0"; return 1; }
	echo "PASS: sacctmgr shows ai_project GrpTRESMins gres/gpu=0"
	out=$("${APPLY[@]}" --apply 2>&1) || { echo "$out"; echo "FAIL: second --apply"; return 1; }
	{ grep -q 'nothing to do' <<<"$out" && ! grep -q -- ' -> ' <<<"$out"; } || { echo "$out"; echo "FAIL: second run not idempotent"; return 1; }
	echo "PASS: a second --apply changes nothing"
	# the node run.sh drained for the alert check takes jobs again
	scontrol update nodename="$E2E_NODE" state=resume
	job=$(in_rig runuser -u alice -- sbatch --parsable -A ai_project -p gpu --gpus=1 -c 1 -t 5 -o /dev/null --wrap 'sleep 60')
	for _ in $(seq 1 90); do
		# state_reason, not %r: squeue prints a description there when slurmctld set one
		read -r st r <<<"$(squeue --json -j "${job%%;*}" | jq -r '.jobs[0] | "\(.job_state | if type == "array" then .[0] else . end) \(.state_reason)"')"
		[[ $st == PENDING && $r == AssocGrpGRESMinutes ]] && break
		sleep 1
	done
	[[ $st == PENDING && $r == AssocGrpGRESMinutes ]] || { echo "FAIL: job $job is $st/$r"; return 1; }
	echo "PASS: Slurm holds ai_project's next GPU job $job: PENDING ($r)"
}
phase "budgets apply, enforced by Slurm" enforce_check
phase "the budget alert fired before Slurm held the job" python3 tests/e2e/check.py alert-fired --release "$RELEASE" \
	--prometheus "$PROM" --firing SlurmAccountBudgetExceeded

step "7/7 every job ended, hours closed: usage counters against sreport"
# All jobs end; slurmdbd restarts with its clock 2 h ahead (libfaketime) so that its
# start-up rollup closes the hours this run lived in; sreport reads them at the same
# offset. slurmctld, munge and the exporter keep the real time.
for u in alice gildong bob; do scancel -u "$u" || true; done
for _ in $(seq 1 120); do
	[[ -z $(squeue -h -t R,CG,S -o %i) ]] && break
	sleep 1
done
sleep 6 # the scraper's polls see every end
FAKE=(env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 FAKETIME=+2h FAKETIME_DONT_FAKE_MONOTONIC=1)
log "restarting slurmdbd (pid $E2E_PID_SLURMDBD) with its clock 2 h ahead"
kill -TERM "$E2E_PID_SLURMDBD"
for _ in $(seq 1 150); do pid_alive "$E2E_PID_SLURMDBD" || break; sleep 0.2; done
restart_slurm_daemon slurmdbd "${FAKE[@]}" /usr/sbin/slurmdbd -D
wait_until "slurmdbd back" 60 "$LAST_PID" "$STATE/log/slurmdbd.log" -- sh -c 'sacctmgr -n show cluster | grep -q .'
HOUR_START=$((RIG_START / 3600 * 3600))
HOUR_END=$(($(date +%s) / 3600 * 3600 + 3600))
if [[ -n $CHROOT ]]; then
	SREPORT="chroot $CHROOT ${FAKE[*]} SLURM_CONF=$SLURM_CONF /usr/bin/sreport"
else
	SREPORT="${FAKE[*]} SLURM_CONF=$SLURM_CONF /usr/bin/sreport"
fi
phase "usage counters == sreport over the closed hours" python3 tests/e2e/check.py sreport --release "$RELEASE" \
	--exporter "$EXPORTER" --sreport "$SREPORT" --window "$HOUR_START,$HOUR_END"

if [[ $FAILED -ne 0 ]]; then
	log "e2e: FAILED"
	exit 1
fi
log "e2e: all checks passed in $(($(date +%s) - E2E_T0))s"
