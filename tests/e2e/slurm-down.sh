#!/usr/bin/env bash
# slurm-down.sh STATE_DIR
#
# Stops everything slurm-up.sh started under STATE_DIR, by pid (from
# STATE_DIR/run/pids/*.pid, checked against the recorded start time so a reused
# pid is never signalled), never by process name. Order: cancel jobs (if
# slurmctld answers), slurmrestd, slurmd, slurmctld, slurmdbd, mariadbd, munged;
# then any stray process of this cluster (slurmstepd, job tasks) found by its
# environment (E2E_SLURM_DAEMON_OF=STATE_DIR, or SLURM_CONF=STATE_DIR/etc/slurm.conf
# together with SLURM_JOB_ID). Safe to call repeatedly and after a partial start.
# Leaves STATE_DIR (logs, configs) in place.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by lib.sh
E2E_TAG=slurm-down
# shellcheck source=./lib.sh
source "$HERE/lib.sh"

[[ $# -eq 1 && -n $1 ]] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "must run as root"
STATE_DIR=$(realpath -m -- "$1")
PIDS=$STATE_DIR/run/pids

if [[ ! -d $STATE_DIR ]]; then
	log "$STATE_DIR does not exist: nothing to stop"
	exit 0
fi
if [[ ! -e $STATE_DIR/.slurm-e2e-state ]]; then
	die "$STATE_DIR is not a slurm-e2e state dir (no .slurm-e2e-state)"
fi
export SLURM_CONF=$STATE_DIR/etc/slurm.conf

# recorded_pid NAME -> pid if its pid file exists, the process is alive and its start
# time matches the recorded one.
recorded_pid() {
	local name=$1 pid start now
	[[ -f $PIDS/$name.pid ]] || return 1
	pid=$(<"$PIDS/$name.pid")
	pid_alive "$pid" || return 1
	if [[ -s $PIDS/$name.start ]]; then
		start=$(<"$PIDS/$name.start")
		now=$(pid_starttime "$pid") || return 1
		if [[ $start != "$now" ]]; then
			warn "$name: pid $pid was reused by another process; not touching it"
			return 1
		fi
	fi
	printf '%s\n' "$pid"
}

# kill_wait PID LABEL TIMEOUT: SIGTERM, wait, then SIGKILL.
kill_wait() {
	local pid=$1 label=$2 timeout=$3 i
	log "stopping $label (pid $pid): SIGTERM"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < timeout * 5; i++)); do
		pid_alive "$pid" || { log "$label stopped"; return 0; }
		sleep 0.2
	done
	warn "$label (pid $pid) still alive after ${timeout}s: SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		pid_alive "$pid" || { log "$label killed"; return 0; }
		sleep 0.2
	done
	warn "$label (pid $pid) survived SIGKILL"
	return 1
}

stop_daemon() {
	local name=$1 timeout=$2 pid
	if pid=$(recorded_pid "$name"); then
		kill_wait "$pid" "$name" "$timeout" || true
	else
		log "$name: not running"
	fi
	rm -f "$PIDS/$name.pid" "$PIDS/$name.start"
}

step "stopping slurm e2e cluster in $STATE_DIR"

# 1. cancel jobs while slurmctld and slurmd still run, so slurmstepd cleans up
if recorded_pid slurmctld >/dev/null && recorded_pid slurmd >/dev/null &&
	timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
	jobs=$(timeout 15 squeue -h -t PD,R,CF,CG,S,RQ,RS,SO,RF,RD -o %A 2>/dev/null | tr '\n' ' ' || true)
	if [[ -n ${jobs// /} ]]; then
		log "scancel jobs: $jobs"
		# shellcheck disable=SC2086
		timeout 30 scancel $jobs 2>/dev/null || true
		left="?"
		for ((i = 0; i < 60; i++)); do
			left=$({ timeout 10 squeue -h -t R,CG,CF,S -o %A 2>/dev/null || true; } | wc -l)
			((left == 0)) && break
			sleep 0.5
		done
		log "jobs still active after scancel: $left"
	fi
fi

# 2. daemons, in reverse start order
stop_daemon slurmrestd 10
stop_daemon slurmd 20
stop_daemon slurmctld 30
stop_daemon slurmdbd 30
stop_daemon mysqld 60
stop_daemon munged 10

# 3. strays of this cluster (slurmstepd, job tasks, forks of the daemons)
is_ancestor() {
	local p=$BASHPID ppid
	while [[ $p -gt 1 ]]; do
		[[ $p == "$1" ]] && return 0
		ppid=$(awk '/^PPid:/{print $2}' "/proc/$p/status" 2>/dev/null) || return 1
		[[ -n $ppid ]] || return 1
		p=$ppid
	done
	return 1
}
strays=()
add_stray() {
	local pid=$1 s
	[[ $pid == "$$" || $pid == "$BASHPID" ]] && return 0
	for s in "${strays[@]}"; do [[ $s == "$pid" ]] && return 0; done
	is_ancestor "$pid" && return 0
	pid_alive "$pid" || return 0
	strays+=("$pid")
}
# a) by environment: our daemons (and their forks), and job tasks of this cluster
for d in /proc/[0-9]*; do
	pid=${d#/proc/}
	envs=$(tr '\0' '\n' 2>/dev/null <"$d/environ") || continue
	[[ -n $envs ]] || continue
	if grep -qxF "E2E_SLURM_DAEMON_OF=$STATE_DIR" <<<"$envs" ||
		{ grep -qxF "SLURM_CONF=$STATE_DIR/etc/slurm.conf" <<<"$envs" && grep -q '^SLURM_JOB_ID=' <<<"$envs"; }; then
		add_stray "$pid"
	fi
done
# b) by open files: slurmstepd wipes its environment but keeps slurmd's log and its
#    socket under the slurmd spool dir open
while IFS= read -r fdpath; do
	pid=${fdpath#/proc/}
	add_stray "${pid%%/*}"
done < <(find /proc/[0-9]*/fd -maxdepth 1 \( -lname "$STATE_DIR/log/slurmd.log" -o -lname "$STATE_DIR/spool/d/*" \) 2>/dev/null || true)
if ((${#strays[@]})); then
	for pid in "${strays[@]}"; do
		log "stray process $pid: $(tr "\\0" " " 2>/dev/null <"/proc/$pid/cmdline" | cut -c1-120)"
		kill -TERM "$pid" 2>/dev/null || true
	done
	for ((i = 0; i < 25; i++)); do
		alive=0
		for pid in "${strays[@]}"; do pid_alive "$pid" && alive=1; done
		((alive)) || break
		sleep 0.2
	done
	for pid in "${strays[@]}"; do
		if pid_alive "$pid"; then
			warn "stray $pid ignored SIGTERM: SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
fi
step "all stopped after $(($(date +%s) - E2E_T0))s (logs kept in $STATE_DIR/log)"
