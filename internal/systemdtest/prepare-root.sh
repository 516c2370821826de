#!/usr/bin/env bash
# Prepares, once per machine, the Debian root in which the systemd
# integration test (internal/systemdtest) boots a real systemd as PID 1:
# Debian trixie (systemd 257) with Debian's multi-user Nix (nix-bin 2.26,
# nix-setup-systemd: nixbld users, nix-daemon.socket). About a minute on a
# fresh machine; afterwards the cached directory is reused as it is (the
# test mounts it read-only, as the lower layer of an overlay).
#
#   prepare-root.sh          prepare it if absent, print its path
#   prepare-root.sh --path   only print the path it has (or would have)
#
# The path carries a hash of this script, so changing the package list or
# any step below prepares a new root. Environment: NIXPUSHD_CI_CACHE (the
# cache directory, default /var/cache/nixpushd-ci) and NIXPUSHD_CI_MIRROR
# (default http://deb.debian.org/debian). Needs root and debootstrap.
set -euo pipefail

suite=trixie
packages=(nix-setup-systemd)          # installed by apt, with its dependencies
base=(systemd dbus)                   # debootstrap --include
cache="${NIXPUSHD_CI_CACHE:-/var/cache/nixpushd-ci}"
mirror="${NIXPUSHD_CI_MIRROR:-http://deb.debian.org/debian}"

hash="$(sha256sum <"${BASH_SOURCE[0]}" | cut -c1-12)"
root="$cache/$suite-$hash"
if [ "${1:-}" = --path ]; then
  echo "$root"
  exit 0
fi
if [ -f "$root/.nixpushd-ci-ready" ]; then
  echo "$root"
  exit 0
fi

[ "$(id -u)" = 0 ] || { echo "prepare-root: run as root (debootstrap and chroot need it)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "prepare-root: debootstrap not installed (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one preparation at a time; the loser finds the root ready
if [ -f "$root/.nixpushd-ci-ready" ]; then
  echo "$root"
  exit 0
fi

start=$SECONDS
tmp="$(mktemp -d "$cache/.prepare.XXXXXX")"
trap 'rm -rf --one-file-system "$tmp"' EXIT
log="$tmp.log"
echo "prepare-root: debootstrap $suite into $root (about a minute; log in $log)" >&2
if ! debootstrap --variant=minbase --include="$(IFS=,; echo "${base[*]}")" "$suite" "$tmp" "$mirror" >"$log" 2>&1 ||
  ! chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}" >>"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "prepare-root: preparing the $suite root failed (full log: $log)" >&2
  exit 1
fi
chroot "$tmp" apt-get clean
# Loading kernel modules is the host's business; in a container the unit
# can only fail and mark the system degraded.
ln -sf /dev/null "$tmp/etc/systemd/system/systemd-modules-load.service"
echo nixpushd-ci >"$tmp/etc/hostname"
rm -f "$tmp/etc/machine-id" && touch "$tmp/etc/machine-id" # systemd makes a fresh one per boot
# A user who builds through the nix-daemon, as on a real machine.
chroot "$tmp" useradd --create-home --shell /bin/sh --groups nix-users alice
chroot "$tmp" dpkg-query -W -f '${Package} ${Version}\n' systemd nix-bin >"$tmp/.nixpushd-ci-ready"
rm -rf --one-file-system "$root"
mv "$tmp" "$root"
for old in "$cache/$suite"-*; do # roots of older versions of this script
  [ "$old" = "$root" ] || rm -rf --one-file-system "$old"
done
trap - EXIT
rm -f "$log"
echo "prepare-root: $root ready in $((SECONDS - start))s" >&2
echo "$root"
