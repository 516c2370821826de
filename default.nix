# nixpushd, built from this checkout:
#
#   nix-build                      # ./result/bin/nixpushd, ./result/bin/nixpushd-hook
#   nix-build --arg pkgs 'import <nixpkgs> { system = "aarch64-linux"; }'
#
# The NixOS module is ./nixos-module (see its default.nix); flake users get
# both from ./flake.nix. The package itself is ./nixos-module/package.nix, a
# plain callPackage function, so it can also be used from an overlay:
#
#   nixpushd = final.callPackage "${nixpushd-src}/nixos-module/package.nix" { };
{
  pkgs ? import <nixpkgs> { },
}:
pkgs.callPackage ./nixos-module/package.nix { }
