{
  description = "nixpushd: push what a NixOS machine builds to a self-hosted binary cache on S3";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  # default.nix stays the primary entry point; this flake only exposes the
  # same package and module:
  #   packages.<system>.default   the nixpushd package (./nixos-module/package.nix)
  #   overlays.default            adds pkgs.nixpushd
  #   nixosModules.default        services.nixpushd (./nixos-module)
  outputs =
    { self, nixpkgs }:
    let
      # Linux only: the daemon needs inotify and systemd.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          nixpushd = pkgs.callPackage ./nixos-module/package.nix { };
        in
        {
          inherit nixpushd;
          default = nixpushd;
        }
      );

      overlays.default = final: _prev: {
        nixpushd = final.callPackage ./nixos-module/package.nix { };
      };

      # The module builds its default package from this same source with
      # the system's pkgs (set services.nixpushd.package to override).
      # An attribute set, as `nix flake check` wants, that imports the
      # module by path, so that errors name its file.
      nixosModules.default = {
        imports = [ ./nixos-module ];
      };
      nixosModules.nixpushd = self.nixosModules.default;
    };
}
