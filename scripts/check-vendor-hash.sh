#!/usr/bin/env bash
# Checks that vendorHash in nixos-module/package.nix matches go.mod/go.sum,
# as `nix-build` will. With --fix, rewrites it when it does not.
#
# The check itself is the Go test TestVendorHash (it also runs with
# `go test ./...`); this script only runs it on its own. Needs Go and Nix.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  "") ;;
  --fix) export NIXPUSHD_UPDATE_VENDORHASH=1 ;;
  *) echo "usage: $0 [--fix]" >&2; exit 2 ;;
esac
# CI=true: a missing nix fails instead of skipping the check.
CI=true exec go test -count=1 -run '^TestVendorHash$' -v ./nixos-module/
