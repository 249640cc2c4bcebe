# shellcheck shell=bash
# Shared helpers for slurm-up.sh / slurm-down.sh / jobmix.sh. Sourced, not executed.

E2E_T0=${E2E_T0:-$(date +%s)}

# "[slurm-up +12s] message"
log() { printf '[%s +%ss] %s\n' "${E2E_TAG:-e2e}" "$(($(date +%s) - E2E_T0))" "$*" >&2; }
step() { log "=== $*"; }
warn() { log "WARNING: $*"; }
die() { log "ERROR: $*"; exit 1; }

# Print the last lines of each existing file given (for failure diagnostics).
tail_logs() {
	local f
	for f in "$@"; do
		[[ -f $f ]] || continue
		printf -- '----- last 40 lines of %s -----\n' "$f" >&2
		tail -n 40 "$f" >&2 || true
		printf -- '----- end of %s -----\n' "$f" >&2
	done
}

# proc_field PID -> "STATE STARTTIME" from /proc/PID/stat, or nothing if gone.
proc_state_start() {
	local s f
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	s=${s##*) }
	read -r -a f <<<"$s"
	printf '%s %s\n' "${f[0]}" "${f[19]}"
}

# pid_alive PID: running and not a zombie.
pid_alive() {
	local st
	[[ $1 =~ ^[0-9]+$ ]] || return 1
	st=$(proc_state_start "$1") || return 1
	[[ ${st%% *} != Z && ${st%% *} != X ]]
}

# pid_starttime PID
pid_starttime() {
	local st
	st=$(proc_state_start "$1") || return 1
	printf '%s\n' "${st##* }"
}

# wait_until DESC TIMEOUT_S PID("" for none) LOGFILES(space separated) -- CMD...
# Polls CMD (output suppressed) every 0.5 s until it succeeds. Fails (with the log
# tails) on timeout, or early if PID is given and dies.
wait_until() {
	local desc=$1 timeout=$2 pid=$3 logs=$4
	shift 5
	local start now
	start=$(date +%s)
	log "waiting for $desc (timeout ${timeout}s)"
	while true; do
		if "$@" >/dev/null 2>&1; then
			log "$desc: OK after $(($(date +%s) - start))s"
			return 0
		fi
		if [[ -n $pid ]] && ! pid_alive "$pid"; then
			# shellcheck disable=SC2086
			tail_logs $logs
			die "$desc: process $pid exited (see logs above)"
		fi
		now=$(date +%s)
		if ((now - start >= timeout)); then
			log "last attempt of: $*"
			"$@" >&2 || true
			# shellcheck disable=SC2086
			tail_logs $logs
			die "$desc: timed out after ${timeout}s"
		fi
		sleep 0.5
	done
}

# free_ports N: N distinct TCP ports on 127.0.0.1 that nobody listens on right now,
# drawn at random below Linux's ephemeral range (32768+), where outgoing
# connections would otherwise take them. A port can still be taken between this
# check and our bind: port_owner below catches that.
free_ports() {
	python3 - "$1" <<'PY'
import random, socket, sys
want, got, tries = int(sys.argv[1]), [], 0
while len(got) < want and tries < 10000:
    tries += 1
    p = random.randrange(20000, 32000)
    if p in got:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        got.append(p)
    except OSError:
        pass
    finally:
        s.close()
if len(got) < want:
    sys.exit("no free ports")
print(" ".join(map(str, got)))
PY
}

# port_owner PORT: pids of the processes listening on TCP PORT (any address).
port_owner() {
	ss -Hltnp "( sport = :$1 )" 2>/dev/null | grep -oE 'pid=[0-9]+' | cut -d= -f2 | sort -u
}

# expect_port_owner NAME PORT PID: fail unless PID (ours) is what listens on PORT, so
# an answer from somebody else's process on a port we picked never counts as ours.
expect_port_owner() {
	local name=$1 port=$2 pid=$3 owners
	owners=$(port_owner "$port" | tr '\n' ' ')
	if [[ " $owners " == *" $pid "* ]]; then
		log "$name: pid $pid listens on port $port"
		return 0
	fi
	die "$name (pid $pid) is not what listens on port $port (listening: ${owners:-nobody})"
}
