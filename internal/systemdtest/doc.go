// Package systemdtest runs the shipped units, nixos-module/nixpushd.service
// and nixpushd.socket, under a real systemd: Debian trixie's systemd 257 as
// PID 1 in new pid, mount, cgroup, uts and ipc namespaces, with Debian's
// multi-user Nix whose nix-daemon calls nixpushd's post-build-hook. It has
// only tests; see systemd_int_test.go for what they check.
//
// Files:
//   - prepare-root.sh makes the Debian root once per machine (debootstrap,
//     about a minute) under /var/cache/nixpushd-ci; .ci/install-deps runs it.
//   - boot.sh boots systemd on an overlay of that root, so that every run
//     starts from the same clean system and the cached root stays as it is.
//
// Needs root, util-linux (unshare, nsenter), overlayfs and a cgroup2
// hierarchy. Without them, or without the prepared root, the test skips,
// and fails under CI=true.
package systemdtest
