#!/usr/bin/env bash
# jobmix.sh [STATE_DIR]
#
# Submits a fixed job mix to the cluster started by slurm-up.sh (STATE_DIR, or the
# one whose env is already sourced: $E2E_SLURM_STATE_DIR) as the users alice,
# gildong and bob, then waits until every job has reached its expected state.
# Run it once per fresh cluster (the expected states assume an empty cluster).
#
# Writes STATE_DIR/jobmix.env (JOB_<NAME>=<jobid>, sourceable) and
# STATE_DIR/jobmix.tsv (name, jobid, user, account, partition, expected state, expected reason).
#
# Job mix on node vm (64 CPUs, 250G, 8 GPUs; DefMemPerCPU=2000):
#   finished : quick-cpu COMPLETED, quick-gpu COMPLETED, broken-script FAILED (exit 1),
#              gpu-crash FAILED (exit 3), cancel-running CANCELLED (ran), cancel-pending CANCELLED (never ran)
#   running  : train-llama (--gres=gpu:2), finetune-bert (--gpus=2, qos gpu_limit),
#              bob-infer (--gpus-per-node=1), md-gromacs (--gres=gpu:h100:1), cfd-openfoam (cpu),
#              param-sweep array 0-9%3 (3 running, 7 pending JobArrayTaskLimit)
#   pending  : pretrain-70b (--gpus=4, Resources), extra-eval (qos gpu_limit, QOSMaxGRESPerUser),
#              held-job (--hold, JobHeldUser), postprocess (afterok:train-llama, Dependency),
#              pinned-down (-w gpu-node02, ReqNodeNotAvail with UnavailableNodes in squeue's %r)
# 6 of 8 GPUs end up allocated. Running jobs sleep 3600.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by lib.sh
E2E_TAG=jobmix
# shellcheck source=./lib.sh
source "$HERE/lib.sh"

[[ $EUID -eq 0 ]] || die "must run as root"
if [[ $# -ge 1 ]]; then
	# shellcheck disable=SC1091
	source "$(realpath -m -- "$1")/env" || die "no env file in $1 (did slurm-up.sh succeed?)"
elif [[ -n ${E2E_SLURM_STATE_DIR:-} ]]; then
	# shellcheck disable=SC1091
	source "$E2E_SLURM_STATE_DIR/env"
else
	echo "usage: $0 STATE_DIR   (or source STATE_DIR/env first)" >&2
	exit 2
fi
STATE_DIR=$E2E_SLURM_STATE_DIR
JOBDIR=$E2E_JOB_DIR
SETTLE_TIMEOUT=${E2E_JOBMIX_TIMEOUT:-150}

if [[ -e $STATE_DIR/jobmix.tsv ]]; then
	warn "jobmix already ran on this cluster ($STATE_DIR/jobmix.tsv); expected states may not be reached"
fi
: >"$STATE_DIR/jobmix.tsv.tmp"
: >"$STATE_DIR/jobmix.env.tmp"

# submit NAME USER ACCOUNT PARTITION EXPECTED_STATE EXPECTED_REASON -- sbatch args...
# (runs sbatch as USER via runuser: the job is owned by USER through munge)
submit() {
	local name=$1 user=$2 account=$3 part=$4 exp_state=$5 exp_reason=$6 out id var
	shift 7
	out=$(cd "$JOBDIR" && runuser -u "$user" -- sbatch --parsable -J "$name" -A "$account" -p "$part" \
		-o "$JOBDIR/%x-%j.out" "$@" 2>&1) || die "sbatch $name as $user failed: $out"
	id=${out%%;*}
	[[ $id =~ ^[0-9]+$ ]] || die "sbatch $name: unexpected output: $out"
	log "submitted $name = job $id (user $user, account $account, partition $part): sbatch $*"
	var=JOB_$(tr 'a-z-' 'A-Z_' <<<"$name")
	printf '%s=%s\n' "$var" "$id" >>"$STATE_DIR/jobmix.env.tmp"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$id" "$user" "$account" "$part" "$exp_state" "$exp_reason" \
		>>"$STATE_DIR/jobmix.tsv.tmp"
	declare -g "$var=$id"
}

# state of a (non-array) job: from squeue while slurmctld knows it, else sacct
job_state() {
	local st
	st=$(squeue -h -j "$1" -t all -o %T 2>/dev/null | head -n1) || true
	if [[ -z $st ]]; then st=$(sacct -n -X -P -j "$1" -o State 2>/dev/null | head -n1 | cut -d' ' -f1) || true; fi
	printf '%s\n' "$st"
}
# squeue prints the state description where there is one ("ReqNodeNotAvail,
# UnavailableNodes:gpu-node02"): the reason is the part before the comma.
job_reason() { squeue -h -j "$1" -o %r 2>/dev/null | head -n1 | cut -d, -f1 || true; }
# final state as recorded by slurmdbd (sacct), e.g. COMPLETED, FAILED, CANCELLED
acct_state() { sacct -n -X -P -j "$1" -o State 2>/dev/null | head -n1 | cut -d' ' -f1 || true; }
acct_exit() { sacct -n -X -P -j "$1" -o ExitCode 2>/dev/null | head -n1 || true; }

wait_state() { # wait_state JOBID STATE TIMEOUT
	local i
	for ((i = 0; i < $3 * 2; i++)); do
		[[ $(job_state "$1") == "$2" ]] && return 0
		sleep 0.5
	done
	squeue -j "$1" -t all >&2 || true
	die "job $1 did not reach $2 within $3s (state: $(job_state "$1"))"
}

LONG='sleep 3600'
step "1/4 short jobs (completed / failed)"
submit quick-cpu gildong ai_project cpu COMPLETED - -- -c 1 -t 5 --wrap 'sleep 2'
submit quick-gpu alice hpc_project gpu COMPLETED - -- -c 2 -t 5 --gres=gpu:1 --wrap 'sleep 3'
submit broken-script bob hpc_project cpu FAILED - -- -c 1 -t 5 --wrap 'echo failing on purpose >&2; exit 1'
submit gpu-crash alice ai_project gpu FAILED - -- -c 2 -t 5 --gpus=1 --wrap 'sleep 1; exit 3'

step "2/4 long running jobs"
submit train-llama alice ai_project gpu RUNNING - -- -c 4 --mem=16G -t 1-00:00:00 --gres=gpu:2 --wrap "$LONG"
submit finetune-bert gildong ai_project gpu RUNNING - -- -c 8 -t 1-00:00:00 --qos=gpu_limit --gpus=2 --wrap "$LONG"
submit bob-infer bob hpc_project gpu RUNNING - -- -N 1 -c 2 -t 04:00:00 --gpus-per-node=1 --wrap "$LONG"
submit md-gromacs alice hpc_project gpu RUNNING - -- -c 4 -t 1-00:00:00 --gres=gpu:h100:1 --wrap "$LONG"
submit cfd-openfoam bob hpc_project cpu RUNNING - -- -c 16 --mem=64G -t 1-00:00:00 --wrap "$LONG"
submit param-sweep alice hpc_project cpu ARRAY - -- -c 2 -t 1-00:00:00 --array=0-9%3 --wrap "$LONG"
# the array's running tasks take the next job ids (11-13) when they start: wait for
# that so every later job id is deterministic
for ((i = 0; i < 120; i++)); do
	(($(squeue -h -r -j "$JOB_PARAM_SWEEP" -t R -o %i | wc -l) == 3)) && break
	sleep 0.5
done
(($(squeue -h -r -j "$JOB_PARAM_SWEEP" -t R -o %i | wc -l) == 3)) || die "array $JOB_PARAM_SWEEP: 3 tasks not running after 60s"
submit cancel-running alice ai_project cpu CANCELLED - -- -c 1 -t 1-00:00:00 --wrap "$LONG"
for j in "$JOB_TRAIN_LLAMA" "$JOB_FINETUNE_BERT" "$JOB_BOB_INFER" "$JOB_MD_GROMACS" "$JOB_CANCEL_RUNNING"; do
	wait_state "$j" RUNNING 60
done
log "cancelling running job $JOB_CANCEL_RUNNING (as alice)"
runuser -u alice -- scancel "$JOB_CANCEL_RUNNING"

step "3/4 pending jobs"
submit pretrain-70b gildong ai_project gpu PENDING Resources -- -c 16 -t 2-00:00:00 --gpus=4 --wrap "$LONG"
submit extra-eval gildong ai_project gpu PENDING QOSMaxGRESPerUser -- -c 2 -t 1-00:00:00 --qos=gpu_limit --gpus=3 --wrap "$LONG"
submit held-job alice hpc_project gpu PENDING JobHeldUser -- -c 2 -t 1-00:00:00 --hold --gres=gpu:1 --wrap "$LONG"
submit postprocess bob hpc_project gpu PENDING Dependency -- -c 2 -t 1-00:00:00 --gpus=1 \
	--dependency=afterok:"$JOB_TRAIN_LLAMA" --wrap "$LONG"
submit cancel-pending gildong ai_project gpu CANCELLED - -- -c 4 -t 1-00:00:00 --gpus=8 --wrap "$LONG"
wait_state "$JOB_CANCEL_PENDING" PENDING 30
log "cancelling pending job $JOB_CANCEL_PENDING (as gildong)"
runuser -u gildong -- scancel "$JOB_CANCEL_PENDING"
# a job pinned to a down node: squeue's %r shows a description next to the reason
submit pinned-down bob hpc_project gpu PENDING ReqNodeNotAvail -- -c 2 -t 1:00:00 -w gpu-node02 --gpus=1 --wrap "$LONG"

mv "$STATE_DIR/jobmix.tsv.tmp" "$STATE_DIR/jobmix.tsv"
mv "$STATE_DIR/jobmix.env.tmp" "$STATE_DIR/jobmix.env"

step "4/4 waiting for states to settle (timeout ${SETTLE_TIMEOUT}s)"
# one line per unmet expectation; empty when everything settled
unsettled() {
	local name id user account part exp_state exp_reason st r n
	while IFS=$'\t' read -r name id user account part exp_state exp_reason; do
		case $exp_state in
		RUNNING)
			st=$(job_state "$id")
			[[ $st == RUNNING ]] || echo "$name($id): state $st, want RUNNING"
			;;
		PENDING)
			st=$(job_state "$id")
			r=$(job_reason "$id")
			[[ $st == PENDING && $r == "$exp_reason" ]] || echo "$name($id): $st/$r, want PENDING/$exp_reason"
			;;
		ARRAY)
			n=$(squeue -h -r -j "$id" -t R -o %i 2>/dev/null | wc -l)
			r=$(squeue -h -r -j "$id" -t PD -o %r 2>/dev/null | sort -u | tr '\n' ' ')
			[[ $n == 3 && $r == "JobArrayTaskLimit " ]] || echo "$name($id): $n running, pending reasons '$r', want 3 + JobArrayTaskLimit"
			;;
		*) # finished: must be recorded in slurmdbd
			st=$(acct_state "$id")
			[[ $st == "$exp_state" ]] || echo "$name($id): sacct state '$st', want $exp_state"
			;;
		esac
	done <"$STATE_DIR/jobmix.tsv"
}
start=$(date +%s)
while true; do
	left=$(unsettled)
	[[ -z $left ]] && break
	if (($(date +%s) - start >= SETTLE_TIMEOUT)); then
		squeue -t all -o '%.6i %.14j %.8u %.12a %.5P %.10T %.20r %b' >&2 || true
		sacct -a -X -o JobID,JobName%14,User,State,ExitCode >&2 || true
		tail_logs "$E2E_LOG_DIR/slurmctld.log"
		die "job states did not settle within ${SETTLE_TIMEOUT}s:"$'\n'"$left"
	fi
	sleep 1
done
log "all jobs settled after $(($(date +%s) - start))s"
[[ $(acct_exit "$JOB_BROKEN_SCRIPT") == 1:0 ]] || warn "broken-script exit code $(acct_exit "$JOB_BROKEN_SCRIPT"), expected 1:0"
squeue -o '%.8i %.14j %.8u %.12a %.5P %.10T %.20r %.4C %b %N' | sed 's/^/    /' >&2
sinfo -N -o '%N %P %T %C %G %E' | sed 's/^/    /' >&2
step "job mix done ($(wc -l <"$STATE_DIR/jobmix.tsv") submissions); ids in $STATE_DIR/jobmix.env"
