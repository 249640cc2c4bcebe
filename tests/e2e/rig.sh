# shellcheck shell=bash
# A live Slurm rig of a given release, for tests/e2e/run.sh and benches/slurmctld_load.sh.
# Sourced after lib.sh, from the repository root. Needs TOP (a fresh state directory)
# and the E2E_*_PORT variables (free ports) set.
#
#   rig_up RELEASE      Slurm up (22.05 on this host; 24.11/26.05 in an mmdebstrap chroot),
#                       then sources $TOP/slurm/env. Sets CHROOT (empty
#                       on the host) and IN (the command prefix that runs a program where
#                       Slurm is installed), and puts the chroot's Slurm CLI first on PATH.
#   rig_jobmix          submits the job mix (tests/e2e/jobmix.sh) and waits until it settles.
#   rig_down            stops everything rig_up started, by pid; unmounts the chroot.

CHROOT=""
IN=()

rig_suite() {
	case $1 in
	22.05) echo "" ;;     # Debian 12's own packages, on the host
	24.11) echo trixie ;; # slurmrestd v0.0.40-v0.0.42
	26.05) echo sid ;;    # slurmrestd v0.0.42-v0.0.45, native OpenMetrics
	*) die "unknown release $1 (22.05, 24.11 or 26.05)" ;;
	esac
}

rig_up() {
	local release=$1 suite state=$TOP/slurm t
	suite=$(rig_suite "$release")
	if [[ -n $suite ]]; then
		CHROOT=$(bash tests/e2e/chroot.sh ensure "$suite")
		# The job users exist on the host too, with the uids the chroot gives them.
		for u in alice gildong bob; do
			getent passwd "$u" >/dev/null || useradd --create-home --shell /bin/bash --user-group "$u"
			export "E2E_UID_$u=$(id -u "$u")"
		done
		bash tests/e2e/chroot.sh enter "$CHROOT" "$TOP"
		mkdir -p "$CHROOT/opt/sge-e2e"
		cp tests/e2e/*.sh "$CHROOT/opt/sge-e2e/"
		# The chroot's own PATH: the host-side wrappers below live in the state dir, which is
		# visible inside too, and must not be found there.
		IN=(chroot "$CHROOT" env PATH=/usr/sbin:/usr/bin:/sbin:/bin E2E_IN_CHROOT=1 E2E_SKIP_INSTALL=1)
		"${IN[@]}" bash /opt/sge-e2e/slurm-up.sh "$state"
		# The Slurm CLI for the caller and check.py: the chroot's, through wrappers.
		mkdir -p "$TOP/bin"
		for t in squeue sinfo sacct scontrol sshare sdiag sreport sacctmgr sprio scancel sbatch; do
			printf '#!/bin/sh\nexec chroot %q env SLURM_CONF=%q /usr/bin/%s "$@"\n' \
				"$CHROOT" "$state/etc/slurm.conf" "$t" >"$TOP/bin/$t"
			chmod 755 "$TOP/bin/$t"
		done
		export PATH=$TOP/bin:$PATH
	else
		bash tests/e2e/slurm-up.sh "$state"
	fi
	# shellcheck disable=SC1091
	. "$state/env"
	log "Slurm $E2E_SLURM_RELEASE, slurmrestd $SLURMRESTD_API_VERSION at $SLURMRESTD_URL"
	[[ $E2E_SLURM_RELEASE == "$release".* ]] || die "asked for Slurm $release, got $E2E_SLURM_RELEASE"
	expect_port_owner mariadbd "$E2E_MYSQL_PORT" "$E2E_PID_MYSQLD"
	expect_port_owner slurmdbd "$E2E_SLURMDBD_PORT" "$E2E_PID_SLURMDBD"
	expect_port_owner slurmctld "$E2E_SLURMCTLD_PORT" "$E2E_PID_SLURMCTLD"
	expect_port_owner slurmd "$E2E_SLURMD_PORT" "$E2E_PID_SLURMD"
	expect_port_owner slurmrestd "$E2E_SLURMRESTD_PORT" "$E2E_PID_SLURMRESTD"
}

rig_jobmix() {
	if [[ -n $CHROOT ]]; then
		"${IN[@]}" bash /opt/sge-e2e/jobmix.sh "$TOP/slurm"
	else
		bash tests/e2e/jobmix.sh "$TOP/slurm"
	fi
}

# in_rig CMD...: run a program where Slurm is installed, with this rig's SLURM_CONF.
in_rig() {
	if [[ -n $CHROOT ]]; then
		chroot "$CHROOT" env PATH=/usr/sbin:/usr/bin:/sbin:/bin SLURM_CONF="$SLURM_CONF" "$@"
	else
		env SLURM_CONF="$SLURM_CONF" "$@"
	fi
}

# as_slurm_user USER CMD...: run a Slurm client as USER where Slurm is installed.
as_slurm_user() {
	local user=$1
	shift
	if [[ -n $CHROOT ]]; then
		chroot "$CHROOT" runuser -u "$user" -- env PATH=/usr/bin:/bin SLURM_CONF="$SLURM_CONF" HOME=/tmp "$@"
	else
		runuser -u "$user" -- env SLURM_CONF="$SLURM_CONF" "$@"
	fi
}

rig_down() {
	local state=$TOP/slurm
	if [[ -n $CHROOT ]]; then
		"${IN[@]}" bash /opt/sge-e2e/slurm-down.sh "$state"
		bash tests/e2e/chroot.sh leave "$CHROOT" "$TOP"
	else
		bash tests/e2e/slurm-down.sh "$state"
	fi
}
