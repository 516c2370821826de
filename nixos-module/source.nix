# The source of the nixpushd package: the Go module and nothing else, so that
# editing the README or docs/, the NixOS module or CI scripts does not rebuild it.
#
#   (import ./source.nix { inherit lib; }).src ../.
#
# Kept: go.mod, go.sum, every *.go file (tests included: the vendor
# directory, and so vendorHash, depends on what all packages and their
# tests import), anything under a testdata/ directory, and the Grafana
# dashboard.
# Dropped: dot-directories (.git, .ci), a local vendor/ directory (the
# build vendors from vendorHash), and result* symlinks of nix-build.
{ lib }:
let
  # Whether to keep the file or directory at `rel`, a path relative to the
  # root such as "nar/nar.go", of the given type ("regular", "directory",
  # "symlink", …, as builtins.readDir says).
  keep =
    rel: type:
    let
      parts = lib.splitString "/" rel;
      base = lib.last parts;
    in
    if lib.any (p: lib.hasPrefix "." p) parts then
      false
    else if rel == "vendor" || lib.hasPrefix "result" (lib.head parts) then
      false
    else if type == "directory" then
      true
    else if lib.elem "testdata" (lib.init parts) then
      true
    else if type != "regular" then
      false
    else
      rel == "go.mod" || rel == "go.sum" || lib.hasSuffix ".go" base
      # Installed by package.nix, and read by the metrics tests.
      || rel == "metrics/grafana-dashboard.json";
in
{
  inherit keep;

  src =
    root:
    let
      prefix = toString root + "/";
    in
    lib.cleanSourceWith {
      name = "nixpushd-source";
      src = root;
      filter = path: type: keep (lib.removePrefix prefix (toString path)) type;
    };
}
