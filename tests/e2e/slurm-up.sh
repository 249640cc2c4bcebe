#!/usr/bin/env bash
# slurm-up.sh STATE_DIR
#
# Brings up a real single-host Slurm cluster from Debian packages, no systemd: Debian 12's
# own 22.05 on the host, or (run inside a chroot made by chroot.sh) trixie's 24.11 or
# sid's 26.05; the script reads the release from `slurmctld -V` and adapts the configs:
# munged, MariaDB, slurmdbd, slurmctld, slurmd and slurmrestd, everything under
# STATE_DIR (configs, logs, pids, spool, sockets, database) and on loopback with
# non-default ports. Writes STATE_DIR/env for the other scripts to source.
#
# STATE_DIR is wiped first if it is a previous state dir of these scripts (marker
# file .slurm-e2e-state); any daemons still running from it are stopped first.
# On failure it stops what it started (set E2E_KEEP_ON_FAILURE=1 to keep them).
# Meant to be paired with: trap 'tests/e2e/slurm-down.sh "$STATE_DIR"' EXIT
#
# Tunables (environment): E2E_SKIP_INSTALL=1, E2E_CLUSTER (e2e), E2E_NODE (vm),
# E2E_MYSQL_PORT (13306), E2E_SLURMCTLD_PORT (16817), E2E_SLURMD_PORT (16818),
# E2E_SLURMDBD_PORT (16819), E2E_SLURMRESTD_PORT (16820), E2E_TOKEN_LIFESPAN (86400).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by lib.sh
E2E_TAG=slurm-up
# shellcheck source=./lib.sh
source "$HERE/lib.sh"

[[ $# -eq 1 && -n $1 ]] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "must run as root"

STATE_DIR=$(realpath -m -- "$1")
case "$STATE_DIR" in
/ | /tmp | /var | /var/tmp | /root | /home | /usr | /etc | /opt | /srv | /run) die "refusing STATE_DIR=$STATE_DIR" ;;
esac

CLUSTER=${E2E_CLUSTER:-e2e}
NODE=${E2E_NODE:-vm}
HOST_SHORT=$(hostname -s)
MYSQL_PORT=${E2E_MYSQL_PORT:-13306}
CTLD_PORT=${E2E_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${E2E_SLURMD_PORT:-16818}
DBD_PORT=${E2E_SLURMDBD_PORT:-16819}
REST_PORT=${E2E_SLURMRESTD_PORT:-16820}
PHANTOM_PORT=${E2E_PHANTOM_PORT:-16899} # nothing listens here: the never-up nodes stay unreachable
TOKEN_LIFESPAN=${E2E_TOKEN_LIFESPAN:-86400}
API=v0.0.38 # replaced below by the release's newest

# prometheus runs on the host; a chroot (E2E_IN_CHROOT=1) only needs Slurm's side
PACKAGES=(slurmctld slurmd slurmdbd slurmrestd slurm-client slurm-wlm-jwt-plugin munge
	mariadb-server curl jq libfaketime)
[[ ${E2E_IN_CHROOT:-0} == 1 ]] || PACKAGES+=(prometheus)

ETC=$STATE_DIR/etc
RUN=$STATE_DIR/run
PIDS=$RUN/pids
LOGD=$STATE_DIR/log
MUNGE_SOCK=$RUN/munge/munge.socket.2
MYSQL_SOCK=$RUN/mysql/mysqld.sock
export SLURM_CONF=$ETC/slurm.conf

CREATED_POLICY_RC=0
UP_OK=0
on_exit() {
	local rc=$?
	if ((CREATED_POLICY_RC)); then rm -f /usr/sbin/policy-rc.d; fi
	if ((!UP_OK)); then
		log "slurm-up FAILED (exit $rc); logs are in $LOGD"
		if [[ ${E2E_KEEP_ON_FAILURE:-0} != 1 && -d $PIDS ]]; then
			log "stopping what was started (E2E_KEEP_ON_FAILURE=1 keeps it)"
			"$HERE/slurm-down.sh" "$STATE_DIR" || true
		fi
	fi
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# --- 1. packages --------------------------------------------------------------
step "1/10 packages"
missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done
if [[ ${E2E_SKIP_INSTALL:-0} == 1 ]]; then
	((${#missing[@]} == 0)) || die "E2E_SKIP_INSTALL=1 but missing packages: ${missing[*]}"
elif ((${#missing[@]})); then
	log "installing: ${missing[*]}"
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		# keep maintainer scripts from starting services
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		CREATED_POLICY_RC=1
	fi
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
	if ((CREATED_POLICY_RC)); then rm -f /usr/sbin/policy-rc.d; CREATED_POLICY_RC=0; fi
else
	log "all packages already installed"
fi
for b in /usr/sbin/munged /usr/sbin/mariadbd /usr/sbin/slurmdbd /usr/sbin/slurmctld /usr/sbin/slurmd \
	/usr/sbin/slurmrestd /usr/bin/sbatch /usr/bin/sacctmgr /usr/bin/setpriv /usr/bin/jq /usr/bin/curl; do
	[[ -x $b ]] || die "missing $b"
done
log "$(slurmctld -V)"
# "slurm-wlm 26.05.5" / "slurm 22.05.8" -> 2605
SLURM_RELEASE=$(slurmctld -V | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1)
SLURM_MM=$(awk -F. '{printf "%d%02d", $1, $2}' <<<"$SLURM_RELEASE")
# The newest API each release serves (what the exporter's detection picks).
if ((SLURM_MM >= 2605)); then API=v0.0.45
elif ((SLURM_MM >= 2411)); then API=v0.0.42
else API=v0.0.38; fi
log "release $SLURM_RELEASE: slurmrestd $API"

# --- 2. users -----------------------------------------------------------------
step "2/10 users"
for u in slurm munge mysql; do getent passwd "$u" >/dev/null || die "system user $u missing (package install broken?)"; done
if ! getent passwd slurmrestd >/dev/null; then
	log "useradd slurmrestd (system user)"
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --user-group slurmrestd
fi
# E2E_UID_<user>: the uid the host gave that user (a chroot must use the same, so
# the host's `id -u` and the node agent's fixture tree agree with Slurm's view).
for u in alice gildong bob; do
	if ! getent passwd "$u" >/dev/null; then
		uidvar=E2E_UID_$u
		if [[ -n ${!uidvar:-} ]]; then
			log "useradd $u (uid ${!uidvar})"
			useradd --create-home --shell /bin/bash --user-group -u "${!uidvar}" "$u"
		else
			log "useradd $u"
			useradd --create-home --shell /bin/bash --user-group "$u"
		fi
	fi
done

# --- 3. state dir -------------------------------------------------------------
step "3/10 state dir $STATE_DIR"
if [[ -e $STATE_DIR ]]; then
	[[ -d $STATE_DIR ]] || die "$STATE_DIR exists and is not a directory"
	if [[ -e $STATE_DIR/.slurm-e2e-state ]]; then
		log "previous state found: stopping leftovers and wiping it"
		"$HERE/slurm-down.sh" "$STATE_DIR"
		find "$STATE_DIR" -mindepth 1 -delete
	elif [[ -n $(ls -A "$STATE_DIR") ]]; then
		die "$STATE_DIR is not empty and not a slurm-e2e state dir; refusing to wipe it"
	fi
fi
mkdir -p "$STATE_DIR"
chmod 755 "$STATE_DIR"
touch "$STATE_DIR/.slurm-e2e-state"
# every daemon user must be able to traverse the path
runuser -u nobody -- test -x "$STATE_DIR" || die "$STATE_DIR is not traversable by other users (check parent dir permissions)"
install -d -m 755 "$ETC" "$RUN" "$PIDS" "$LOGD" "$STATE_DIR/dev" "$STATE_DIR/spool"
install -d -m 700 -o munge -g munge "$ETC/munge"
install -d -m 755 -o munge -g munge "$RUN/munge"
install -d -m 755 -o mysql -g mysql "$RUN/mysql"
install -d -m 700 -o mysql -g mysql "$STATE_DIR/mysql"
install -d -m 755 -o slurm -g slurm "$RUN/slurm" "$STATE_DIR/spool/ctld"
install -d -m 700 -o slurm -g slurm "$ETC/jwt"
install -d -m 755 "$STATE_DIR/spool/d"
install -d -m 1777 "$STATE_DIR/jobs"
install -m 640 -o munge -g munge /dev/null "$LOGD/munged.log"
install -m 640 -o mysql -g mysql /dev/null "$LOGD/mysqld.log"
install -m 644 -o slurm -g slurm /dev/null "$LOGD/slurmdbd.log"
install -m 644 -o slurm -g slurm /dev/null "$LOGD/slurmctld.log"
install -m 644 /dev/null "$LOGD/slurmd.log"
install -m 644 /dev/null "$LOGD/slurmrestd.log"
for i in 0 1 2 3 4 5 6 7; do mknod -m 666 "$STATE_DIR/dev/nvidia$i" c 1 3; done

# keys
head -c 1024 /dev/urandom >"$ETC/munge/munge.key"
chown munge:munge "$ETC/munge/munge.key"
chmod 400 "$ETC/munge/munge.key"
head -c 32 /dev/urandom >"$ETC/jwt/jwt_hs256.key"
chown slurm:slurm "$ETC/jwt/jwt_hs256.key"
chmod 600 "$ETC/jwt/jwt_hs256.key"
DB_PASS=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')

# nothing may listen on our ports yet (e.g. a cluster from another STATE_DIR)
for port in "$MYSQL_PORT" "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$REST_PORT" "$PHANTOM_PORT"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		die "127.0.0.1:$port is already in use (another e2e cluster running? stop it with slurm-down.sh, or set E2E_*_PORT)"
	fi
done

# --- 4. configs ---------------------------------------------------------------
step "4/10 configs in $ETC"
cat >"$ETC/my.cnf" <<EOF
[mysqld]
user=mysql
datadir=$STATE_DIR/mysql
socket=$MYSQL_SOCK
pid-file=$RUN/mysql/mysqld.pid
port=$MYSQL_PORT
bind-address=127.0.0.1
log-error=$LOGD/mysqld.log
skip-name-resolve
skip-log-bin
performance_schema=OFF
innodb_buffer_pool_size=512M
innodb_log_file_size=64M
innodb_lock_wait_timeout=900
innodb_flush_log_at_trx_commit=2
# MariaDB 11.6+ (trixie, sid): slurmdbd refuses to work safely with snapshot isolation on;
# loose- keeps bookworm's 10.11, which lacks the option, from failing on it.
loose-innodb_snapshot_isolation=OFF
[client]
socket=$MYSQL_SOCK
port=$MYSQL_PORT
EOF
chmod 644 "$ETC/my.cnf"

# 22.05 takes the bare socket path; later releases the socket= form.
if ((SLURM_MM >= 2411)); then ACCT_PASS=socket=$MUNGE_SOCK; else ACCT_PASS=$MUNGE_SOCK; fi
# 25.11+ serve their own OpenMetrics on the slurmctld port (what Slinky scrapes).
NATIVE_METRICS=""
if ((SLURM_MM >= 2511)); then NATIVE_METRICS="MetricsType=metrics/openmetrics"; fi
cat >"$ETC/slurm.conf" <<EOF
# generated by tests/e2e/slurm-up.sh -- single host Slurm $SLURM_RELEASE e2e cluster
ClusterName=$CLUSTER
SlurmctldHost=$HOST_SHORT(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$ETC/jwt/jwt_hs256.key
StateSaveLocation=$STATE_DIR/spool/ctld
SlurmdSpoolDir=$STATE_DIR/spool/d
SlurmctldPidFile=$RUN/slurm/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGD/slurmctld.log
SlurmdLogFile=$LOGD/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups here: /proc based tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=30
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=120
SlurmdTimeout=300
MessageTimeout=20
InactiveLimit=0
KillWait=5
MinJobAge=3600
Waittime=0
# fake hardware: slurmd takes CPUs/RealMemory/Gres from this file instead of probing
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5,sched_interval=10,bf_continue
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2000
GresTypes=gpu
PriorityType=priority/multifactor
PriorityCalcPeriod=1
PriorityDecayHalfLife=1-0
PriorityMaxAge=1-0
PriorityWeightAge=1000
PriorityWeightFairshare=100000
PriorityWeightJobSize=1000
PriorityWeightPartition=10000
PriorityWeightQOS=10000
PriorityWeightTRES=CPU=1000,Mem=1000,GRES/gpu=5000
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# clients/slurmctld take the munge socket for slurmdbd connections from here, not AuthInfo
AccountingStoragePass=$ACCT_PASS
AccountingStorageTRES=gres/gpu,gres/gpu:h100
AccountingStorageEnforce=associations,limits,qos
JobCompType=jobcomp/none
MailProg=/bin/true
$NATIVE_METRICS
# --- nodes: the one real node (runs slurmd) plus nodes that never come up ---
NodeName=$NODE NodeHostname=$HOST_SHORT NodeAddr=127.0.0.1 CPUs=64 Boards=1 SocketsPerBoard=2 CoresPerSocket=32 ThreadsPerCore=1 RealMemory=256000 Gres=gpu:h100:8 Features=h100 Weight=1 State=UNKNOWN
NodeName=gpu-node[02-03] NodeAddr=127.0.0.1 Port=$PHANTOM_PORT CPUs=64 Boards=1 SocketsPerBoard=2 CoresPerSocket=32 ThreadsPerCore=1 RealMemory=256000 Gres=gpu:h100:8 Features=h100 Weight=10 State=DOWN
# FUTURE: configured, not in service; slurmrestd's /nodes omits it, the partition counts it
NodeName=gpu-node04 NodeAddr=127.0.0.1 Port=$PHANTOM_PORT CPUs=64 Boards=1 SocketsPerBoard=2 CoresPerSocket=32 ThreadsPerCore=1 RealMemory=256000 Gres=gpu:h100:8 Features=h100 Weight=10 State=FUTURE
NodeName=cpu-node01 NodeAddr=127.0.0.1 Port=$PHANTOM_PORT CPUs=32 Boards=1 SocketsPerBoard=2 CoresPerSocket=16 ThreadsPerCore=1 RealMemory=128000 Weight=20 State=DOWN
# --- partitions ---
PartitionName=gpu Nodes=$NODE,gpu-node[02-04] Default=YES PriorityTier=100 DefaultTime=01:00:00 MaxTime=2-00:00:00 TRESBillingWeights="CPU=1.0,Mem=0.25G,GRES/gpu=2.0" State=UP
PartitionName=cpu Nodes=$NODE,cpu-node01 Default=NO PriorityTier=10 DefaultTime=00:30:00 MaxTime=1-00:00:00 TRESBillingWeights="CPU=1.0,Mem=0.25G" State=UP
EOF
chmod 644 "$ETC/slurm.conf"

cat >"$ETC/gres.conf" <<EOF
# 22.05 drops GPUs without File= ("Removing file-less GPU") and drains the node,
# so point File= at 8 fake char devices (mknod c 1 3, i.e. /dev/null clones).
AutoDetect=off
NodeName=$NODE Name=gpu Type=h100 Count=8 File=$STATE_DIR/dev/nvidia[0-7]
EOF
chmod 644 "$ETC/gres.conf"

if ((SLURM_MM >= 2411)); then
	# 24.11+ load a cgroup plugin even with proctrack/linuxproc; there is no cgroup here.
	echo "CgroupPlugin=disabled" >"$ETC/cgroup.conf"
	chmod 644 "$ETC/cgroup.conf"
fi

cat >"$ETC/slurmdbd.conf" <<EOF
# generated by tests/e2e/slurm-up.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$ETC/jwt/jwt_hs256.key
DbdHost=$HOST_SHORT
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=slurm
DebugLevel=info
LogFile=$LOGD/slurmdbd.log
PidFile=$RUN/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chown slurm:slurm "$ETC/slurmdbd.conf"
chmod 600 "$ETC/slurmdbd.conf"

# Start DAEMON in the foreground, detached into its own session, stdout/stderr to
# LOG, and record its pid (+ start time, to detect pid reuse) in $PIDS/NAME.pid.
# The marker variable lets slurm-down.sh find strays (e.g. slurmstepd) by pid.
start_daemon() {
	local name=$1 out=$2
	shift 2
	(cd "$STATE_DIR" && E2E_SLURM_DAEMON_OF=$STATE_DIR exec setsid "$@") </dev/null >>"$out" 2>&1 &
	local pid=$!
	echo "$pid" >"$PIDS/$name.pid"
	pid_starttime "$pid" >"$PIDS/$name.start" 2>/dev/null || true
	log "started $name pid $pid: $*"
	LAST_PID=$pid
}

# --- 5. munge -----------------------------------------------------------------
step "5/10 munged (socket $MUNGE_SOCK)"
start_daemon munged "$LOGD/munged.log" \
	setpriv --reuid=munge --regid=munge --init-groups -- \
	/usr/sbin/munged --foreground --socket="$MUNGE_SOCK" --key-file="$ETC/munge/munge.key" \
	--pid-file="$RUN/munge/munged.pid" --log-file="$LOGD/munged.log" --seed-file="$RUN/munge/munged.seed"
MUNGED_PID=$LAST_PID
munge_ok() { munge -S "$MUNGE_SOCK" -n | unmunge -S "$MUNGE_SOCK"; }
wait_until "munged" 30 "$MUNGED_PID" "$LOGD/munged.log" -- munge_ok

# --- 6. mariadb ---------------------------------------------------------------
step "6/10 MariaDB (127.0.0.1:$MYSQL_PORT, datadir $STATE_DIR/mysql)"
log "mariadb-install-db"
if ! mariadb-install-db --defaults-file="$ETC/my.cnf" --user=mysql --skip-test-db \
	--auth-root-authentication-method=socket >"$LOGD/mariadb-install-db.log" 2>&1; then
	tail_logs "$LOGD/mariadb-install-db.log" "$LOGD/mysqld.log"
	die "mariadb-install-db failed"
fi
start_daemon mysqld "$LOGD/mysqld.stdout" /usr/sbin/mariadbd --defaults-file="$ETC/my.cnf"
MYSQLD_PID=$LAST_PID
wait_until "mariadbd" 60 "$MYSQLD_PID" "$LOGD/mysqld.log $LOGD/mysqld.stdout" -- \
	mariadb-admin --defaults-file="$ETC/my.cnf" ping
mariadb --defaults-file="$ETC/my.cnf" -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
log "database slurm_acct_db and user slurm created"

# --- 7. slurmdbd + accounting -------------------------------------------------
step "7/10 slurmdbd (127.0.0.1:$DBD_PORT) and accounting"
start_daemon slurmdbd "$LOGD/slurmdbd.stdout" /usr/sbin/slurmdbd -D
DBD_PID=$LAST_PID
wait_until "slurmdbd" 90 "$DBD_PID" "$LOGD/slurmdbd.log $LOGD/slurmdbd.stdout" -- \
	timeout 15 sacctmgr -n show cluster

# sacctmgr exits 1 on "Nothing new added" / "Nothing modified": tolerate that.
sam() {
	local out rc=0
	out=$(timeout 30 sacctmgr -i "$@" 2>&1) || rc=$?
	if ((rc == 0)); then
		log "sacctmgr $*: ok"
	elif grep -qiE 'nothing new added|nothing modified|already exists' <<<"$out"; then
		log "sacctmgr $*: already there (rc $rc)"
	else
		# shellcheck disable=SC2001
		sed 's/^/    /' <<<"$out" >&2
		die "sacctmgr $* failed (rc $rc)"
	fi
}
sam add cluster "$CLUSTER"

# --- 8. slurmctld + slurmd ----------------------------------------------------
step "8/10 slurmctld (127.0.0.1:$CTLD_PORT)"
start_daemon slurmctld "$LOGD/slurmctld.stdout" /usr/sbin/slurmctld -D -i
CTLD_PID=$LAST_PID
ctld_up() { timeout 10 scontrol ping | grep -q 'is UP'; }
wait_until "slurmctld" 90 "$CTLD_PID" "$LOGD/slurmctld.log $LOGD/slurmctld.stdout" -- ctld_up

# gres/gpu TRES only exists in the database once slurmctld has registered its
# AccountingStorageTRES, so the QOS (GrpTRES=gres/gpu) and the tree come after it.
tres_ok() { timeout 15 sacctmgr -n -P show tres format=type,name | grep -qx 'gres|gpu'; }
wait_until "gres/gpu TRES in slurmdbd" 60 "$CTLD_PID" "$LOGD/slurmctld.log $LOGD/slurmdbd.log" -- tres_ok
sam add qos gpu_limit Priority=20 GrpTRES=gres/gpu=6 MaxTRESPerUser=gres/gpu=4 \
	Description="shared gpu qos: 6 gpus per group, 4 per user"
sam add account research_dept Cluster="$CLUSTER" Fairshare=100 Description="research department" Organization=research
# Association limits the jobs stay within (the exporter's limits series are compared with sacctmgr).
sam add account ai_project Cluster="$CLUSTER" Parent=research_dept Fairshare=100 \
	QOS=normal,gpu_limit DefaultQOS=normal Description="ai project" Organization=research \
	GrpTRES=gres/gpu=16 GrpTRESMins=gres/gpu=100000,cpu=1000000 GrpJobs=50
sam add account hpc_project Cluster="$CLUSTER" Parent=research_dept Fairshare=50 \
	QOS=normal,gpu_limit DefaultQOS=normal Description="hpc project" Organization=research
sam add user alice Cluster="$CLUSTER" Account=ai_project DefaultAccount=ai_project Fairshare=10 QOS=normal,gpu_limit DefaultQOS=normal
sam add user alice Cluster="$CLUSTER" Account=hpc_project Fairshare=10 QOS=normal,gpu_limit DefaultQOS=normal
sam add user gildong Cluster="$CLUSTER" Account=ai_project DefaultAccount=ai_project Fairshare=10 QOS=normal,gpu_limit DefaultQOS=normal
sam add user gildong Cluster="$CLUSTER" Account=hpc_project Fairshare=5 QOS=normal,gpu_limit DefaultQOS=normal
sam add user bob Cluster="$CLUSTER" Account=hpc_project DefaultAccount=hpc_project Fairshare=5 QOS=normal,gpu_limit DefaultQOS=normal \
	MaxJobs=20 MaxTRES=cpu=32
log "association tree:"
sacctmgr -n show assoc format=account%-15,user%-10,fairshare,qos%-20 tree | sed 's/^/    /' >&2

step "9/10 slurmd (node $NODE, 127.0.0.1:$SLURMD_PORT)"
start_daemon slurmd "$LOGD/slurmd.stdout" /usr/sbin/slurmd -D -N "$NODE"
SLURMD_PID=$LAST_PID
node_ready() {
	local st
	st=$(timeout 10 sinfo -h -n "$NODE" -o %T | head -n1)
	[[ $st == idle || $st == mixed || $st == allocated ]]
}
wait_until "node $NODE idle" 90 "$SLURMD_PID" "$LOGD/slurmd.log $LOGD/slurmd.stdout $LOGD/slurmctld.log" -- node_ready
scontrol show node "$NODE" | grep -E 'Gres=|CfgTRES=|State=' | sed 's/^/    /' >&2
gres=$(scontrol show node "$NODE" | grep -o 'Gres=[^ ]*' | head -n1)
[[ $gres == Gres=gpu:h100:8* ]] || die "node $NODE has $gres, expected gpu:h100:8 (see $LOGD/slurmd.log)"
# the never-up nodes: vary their states
scontrol update nodename=gpu-node02 state=down reason="e2e: powered off for repair"
scontrol update nodename=gpu-node03 state=drain reason="e2e: gpu xid 79"
log "nodes:"
sinfo -N -o '%N %P %T %G %E' | sed 's/^/    /' >&2

# --- 10. token + slurmrestd ---------------------------------------------------
step "10/10 JWT tokens and slurmrestd (127.0.0.1:$REST_PORT)"
mktoken() {
	local tok
	tok=$(scontrol token lifespan="$TOKEN_LIFESPAN" username="$1") || die "scontrol token username=$1 failed"
	tok=${tok#SLURM_JWT=}
	[[ -n $tok ]] || die "empty token for $1"
	printf '%s\n' "$tok" >"$2"
	chmod 644 "$2"
}
mktoken root "$STATE_DIR/token"
mktoken alice "$STATE_DIR/token.alice"
log "tokens: $STATE_DIR/token (root), $STATE_DIR/token.alice"
start_daemon slurmrestd "$LOGD/slurmrestd.log" \
	env SLURM_JWT=daemon SLURM_CONF="$SLURM_CONF" \
	/usr/sbin/slurmrestd -u slurmrestd -g slurmrestd -a rest_auth/jwt "127.0.0.1:$REST_PORT"
REST_PID=$LAST_PID
REST_URL=http://127.0.0.1:$REST_PORT
rest_ping() {
	curl -sf --max-time 10 -H "X-SLURM-USER-NAME: root" -H "X-SLURM-USER-TOKEN: $(cat "$STATE_DIR/token")" \
		"$REST_URL/slurm/$API/ping" | jq -e '.pings[0] | .ping == "UP" or .pinged == "UP" or .responding == true'
}
wait_until "slurmrestd $REST_URL/slurm/$API/ping" 60 "$REST_PID" "$LOGD/slurmrestd.log" -- rest_ping

# --- env file -----------------------------------------------------------------
cat >"$STATE_DIR/env" <<EOF
# generated by tests/e2e/slurm-up.sh; source it: . $STATE_DIR/env
export E2E_SLURM_STATE_DIR=$STATE_DIR
export SLURM_CONF=$SLURM_CONF
export SLURMRESTD_URL=$REST_URL
export SLURMRESTD_API_VERSION=$API
export E2E_SLURM_RELEASE=$SLURM_RELEASE
export E2E_SLURM_MM=$SLURM_MM
export E2E_SLURMCTLD_URL=http://127.0.0.1:$CTLD_PORT
# JWT (HS256) for user root; send as X-SLURM-USER-NAME: root + X-SLURM-USER-TOKEN: \$(cat file)
export SLURMRESTD_TOKEN_FILE=$STATE_DIR/token
export SLURMRESTD_TOKEN_USER=root
export SLURMRESTD_TOKEN_ALICE_FILE=$STATE_DIR/token.alice
export E2E_CLUSTER=$CLUSTER
export E2E_NODE=$NODE
export E2E_MUNGE_SOCKET=$MUNGE_SOCK
export E2E_MYSQL_SOCKET=$MYSQL_SOCK
export E2E_MYSQL_PORT=$MYSQL_PORT
export E2E_MYSQL_CNF=$ETC/my.cnf
export E2E_SLURMCTLD_PORT=$CTLD_PORT
export E2E_SLURMDBD_PORT=$DBD_PORT
export E2E_SLURMRESTD_PORT=$REST_PORT
export E2E_LOG_DIR=$LOGD
export E2E_JOB_DIR=$STATE_DIR/jobs
export E2E_PID_MUNGED=$MUNGED_PID
export E2E_PID_MYSQLD=$MYSQLD_PID
export E2E_PID_SLURMDBD=$DBD_PID
export E2E_PID_SLURMCTLD=$CTLD_PID
export E2E_PID_SLURMD=$SLURMD_PID
export E2E_PID_SLURMRESTD=$REST_PID
EOF
chmod 644 "$STATE_DIR/env"
UP_OK=1
step "cluster $CLUSTER is up after $(($(date +%s) - E2E_T0))s; source $STATE_DIR/env"
