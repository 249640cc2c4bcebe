#!/usr/bin/env bash
# chroot.sh: Debian chroots holding a newer Slurm for the live end-to-end test.
#
#   chroot.sh path  SUITE      print the chroot's directory (nothing is built)
#   chroot.sh ensure SUITE     build it with mmdebstrap unless a complete one is cached
#   chroot.sh enter  DIR SHARED_DIR   mount /proc and /sys in DIR and bind SHARED_DIR
#                              (a host directory) at the same path inside, so paths in
#                              configs and logs mean the same thing on both sides
#   chroot.sh leave  DIR SHARED_DIR   undo `enter` (lazy unmounts; safe to repeat)
#
# SUITE is a Debian suite: trixie (Slurm 24.11) or sid (Slurm 26.05). The chroots are
# cached in E2E_CHROOT_CACHE (default /var/cache/slurm-gpu-exporter/e2e-chroots): a
# machine that keeps them saves ~30 s per release, a clean one builds them. A cached
# chroot is reused only if it was built from the same package list (marker file).
# Debian's archive may serve a Release file past its Valid-Until (sid between
# pushes), so apt runs with Check-Valid-Until=false.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by lib.sh
E2E_TAG=chroot
# shellcheck source=./lib.sh
source "$HERE/lib.sh"

CACHE=${E2E_CHROOT_CACHE:-/var/cache/slurm-gpu-exporter/e2e-chroots}
MIRROR=${E2E_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=slurmctld,slurmd,slurmdbd,slurmrestd,slurm-client,slurm-wlm-jwt-plugin,munge,mariadb-server,curl,jq,procps,util-linux,passwd,libfaketime
MARKER=.slurm-gpu-exporter-chroot

suite_ok() { [[ $1 =~ ^[a-z]+$ ]] || die "bad suite '$1'"; }

cmd_path() { suite_ok "$1"; printf '%s/%s\n' "$CACHE" "$1"; }

# "packages=...": a cached chroot built from another list is rebuilt.
want_marker() { printf 'suite=%s\npackages=%s\n' "$1" "$PACKAGES"; }

# Refuse to delete anything with a mount below it (a bind of /proc, /sys or a
# state dir): rm -rf would reach the host through it.
safe_rm() {
	local d=$1
	[[ -e $d ]] || return 0
	if findmnt -rn -o TARGET | awk -v d="$d" 'index($0, d "/") == 1 || $0 == d { found = 1 } END { exit !found }'; then
		die "$d has mounts below it; run 'chroot.sh leave' first"
	fi
	rm -rf --one-file-system -- "$d"
}

cmd_ensure() {
	local suite=$1 dir tmp
	suite_ok "$suite"
	dir=$CACHE/$suite
	if [[ -f $dir/$MARKER ]] && [[ $(head -n2 "$dir/$MARKER") == "$(want_marker "$suite")" ]]; then
		log "cached chroot $dir: $(chroot "$dir" slurmctld -V)"
		printf '%s\n' "$dir"
		return 0
	fi
	command -v mmdebstrap >/dev/null || {
		log "installing mmdebstrap"
		apt-get update -q >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap >&2
	}
	mkdir -p "$CACHE"
	tmp=$CACHE/.$suite.building.$$
	safe_rm "$tmp"
	log "building $suite chroot in $dir with mmdebstrap"
	# Keep maintainer scripts from starting services inside (policy-rc.d exit 101).
	if ! mmdebstrap --mode=root --variant=apt \
		--aptopt='Acquire::Check-Valid-Until "false"' \
		--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--setup-hook='mkdir -p "$1/usr/sbin" && printf "#!/bin/sh\nexit 101\n" >"$1/usr/sbin/policy-rc.d" && chmod 755 "$1/usr/sbin/policy-rc.d"' \
		--include="$PACKAGES" "$suite" "$tmp" "$MIRROR" >&2; then
		safe_rm "$tmp"
		die "mmdebstrap $suite failed"
	fi
	{ want_marker "$suite"; echo "slurm=$(chroot "$tmp" slurmctld -V)"; echo "built=$(date -u +%FT%TZ)"; } >"$tmp/$MARKER"
	safe_rm "$dir"
	mv "$tmp" "$dir"
	log "chroot $dir ready: $(chroot "$dir" slurmctld -V)"
	printf '%s\n' "$dir"
}

is_mounted() { findmnt -rn --mountpoint "$1" >/dev/null 2>&1; }

cmd_enter() {
	local dir=$1 shared=$2
	[[ -f $dir/$MARKER ]] || die "$dir is not a chroot made by chroot.sh"
	[[ $shared == /* && -d $shared ]] || die "shared dir must be an existing absolute path: $shared"
	is_mounted "$dir/proc" || mount -t proc proc "$dir/proc"
	is_mounted "$dir/sys" || mount -t sysfs sysfs "$dir/sys"
	mkdir -p "$dir$shared"
	is_mounted "$dir$shared" || mount --bind "$shared" "$dir$shared"
	# name resolution of the host's name (SlurmctldHost) inside
	cp /etc/hosts "$dir/etc/hosts"
}

cmd_leave() {
	local dir=$1 shared=$2 m others
	if is_mounted "$dir$shared"; then umount -l "$dir$shared" || warn "umount $dir$shared failed"; fi
	# Another rig may still run in the same chroot (its state dir bound below it): then
	# /proc and /sys stay for it.
	others=$(findmnt -rn -o TARGET | awk -v d="$dir" 'index($0, d "/") == 1 && $0 != d "/proc" && $0 != d "/sys"')
	if [[ -n $others ]]; then
		log "chroot $dir still holds $(wc -l <<<"$others") other mount(s): keeping /proc and /sys"
		return 0
	fi
	for m in "$dir/sys" "$dir/proc"; do
		if is_mounted "$m"; then umount -l "$m" || warn "umount $m failed"; fi
	done
}

case ${1:-} in
path) cmd_path "$2" ;;
ensure) cmd_ensure "$2" ;;
enter) cmd_enter "$2" "$3" ;;
leave) cmd_leave "$2" "$3" ;;
*) echo "usage: $0 path|ensure SUITE | enter|leave DIR SHARED_DIR" >&2; exit 2 ;;
esac
