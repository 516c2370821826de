#!/usr/bin/env bash
# Boots systemd as PID 1 on an overlay of a prepared root (prepare-root.sh),
# in new pid, mount, cgroup, uts and ipc namespaces, in the foreground:
# what systemd-nspawn does, minus what this needs no help with. The
# network namespace is the host's.
#
#   boot.sh LOWER UPPER WORK
#
# LOWER stays untouched; every change lands in UPPER (WORK is overlayfs's
# scratch directory on the same file system; the overlay is mounted, in the
# new mount namespace only, at "merged" beside UPPER). Files written into
# UPPER before the boot are part of the booted system. Stop it by killing
# systemd (the namespace's PID 1) with SIGKILL: everything in the
# namespaces dies with it. The cgroup it ran in is left for the caller to
# remove (its path is printed to stdout as "cgroup=…").
set -euo pipefail
lower=$1 upper=$2 work=$3

# systemd needs a writable cgroup2 hierarchy. On a cgroup v1/hybrid host
# that is /sys/fs/cgroup/unified; systemd runs in a fresh child of its root
# and, after unshare --cgroup, sees that child as its root.
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
  cgroot=/sys/fs/cgroup
elif [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
  cgroot=/sys/fs/cgroup/unified
else
  echo "boot: no cgroup2 hierarchy mounted (at /sys/fs/cgroup or /sys/fs/cgroup/unified): systemd cannot run" >&2
  exit 1
fi
cg="$cgroot/nixpushd-ci-$$"
mkdir "$cg"
echo "cgroup=$cg"
echo $$ >"$cg/cgroup.procs"

export lower upper work
exec unshare --kill-child=SIGKILL --pid --mount --cgroup --uts --ipc --fork --propagation private -- bash -euc '
r="$(dirname "$upper")/merged"
mkdir -p "$r"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$r"
mount -t proc proc "$r/proc"
# The kernel is the host'"'"'s: as systemd-nspawn does, no sysctl from inside
# (systemd-sysctl.service would otherwise apply Debian'"'"'s defaults to it).
for p in sys sysrq-trigger; do
  [ -e "$r/proc/$p" ] || continue
  mount --bind "$r/proc/$p" "$r/proc/$p"
  mount -o remount,bind,ro "$r/proc/$p"
done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$r/sys/fs/cgroup"
# /dev: the usual pseudo devices only, as systemd-nspawn gives.
mount -t tmpfs -o mode=755,nosuid,size=4m dev "$r/dev"
for d in null zero full random urandom tty; do
  touch "$r/dev/$d"
  mount --bind "/dev/$d" "$r/dev/$d"
done
mkdir "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
ln -s /proc/self/fd "$r/dev/fd"
for i in 0:stdin 1:stdout 2:stderr; do ln -s "/proc/self/fd/${i%%:*}" "$r/dev/${i#*:}"; done
mount -t tmpfs -o mode=755,nosuid,nodev run "$r/run"
hostname nixpushd-ci
cd "$r"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
# systemd makes / shared only when the kernel starts it, and trusts a
# container manager to have done so. Without it, mounts that systemd makes
# in a child namespace and moves into place (the credentials directory of
# LoadCredential=) never reach the services.
mount --make-rshared /
# container= tells systemd it is a container manager'"'"'s PID 1.
exec env -i container=nixpushd-ci TERM=dumb /lib/systemd/systemd --log-color=no --show-status=no
'
