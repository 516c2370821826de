# Evaluates the nixpushd module, package and flake with only nixpkgs' lib,
# against ./stubs.nix, for the Go tests in the directory above:
#
#   nix-instantiate --eval --strict --json -E '
#     let h = import ./nixos-module/test/eval.nix { libPath = "/path/to/nixpkgs.lib/lib"; };
#     in h.report { services.nixpushd.enable = true; }'
{
  libPath,
  # Where the stub build functions pretend to install the package.
  pkgOut ? "/nix/store/00000000000000000000000000000000-nixpushd-0.1.0",
}:
let
  lib = import libPath;

  fakeDrv = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };

  # A buildGoModule that records its arguments instead of building.
  fakeBuildGoModule =
    builder: args:
    args
    // {
      type = "derivation";
      name = "${args.pname}-${args.version}";
      outPath = pkgOut;
      builtWith = builder;
    };

  # Just enough of nixpkgs for package.nix and the module.
  mkPkgs =
    {
      goVersion ? "1.26.1",
      withGo126 ? true,
      extra ? { },
    }:
    let
      self = {
        inherit lib;
        go = {
          version = goVersion;
        };
        buildGoModule = fakeBuildGoModule "buildGoModule";
        xz = fakeDrv "xz";
        callPackage = lib.callPackageWith self;
      }
      // lib.optionalAttrs withGo126 { buildGo126Module = fakeBuildGoModule "buildGo126Module"; }
      // extra;
    in
    self;

  pkgs = mkPkgs { };

  evalModule =
    pkgs: module:
    lib.evalModules {
      modules = [
        ./stubs.nix
        ../default.nix
        { _module.args.pkgs = pkgs; }
        module
      ];
    };

  # What the tests look at, as JSON-able values.
  reportWith =
    pkgs: module:
    let
      c = (evalModule pkgs module).config;
    in
    {
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
      inherit (c) warnings;
      service = c.systemd.services.nixpushd or null;
      socket = c.systemd.sockets.nixpushd or null;
      gcService = c.systemd.services.nixpushd-gc or null;
      gcTimer = c.systemd.timers.nixpushd-gc or null;
      # Every unit name, to catch units defined by mistake.
      units = lib.attrNames c.systemd.services ++ lib.attrNames c.systemd.timers;
      nixSettings = c.nix.settings;
      users = c.users.users;
      groups = lib.attrNames c.users.groups;
      systemPackages = map (p: p.outPath) c.environment.systemPackages;
      package = c.services.nixpushd.package.outPath;
    };

  describePackage = p: {
    inherit (p)
      pname
      version
      subPackages
      vendorHash
      ldflags
      postInstall
      checkPhase
      builtWith
      ;
    srcName = p.src.name;
    nativeCheckInputs = map (d: d.name) p.nativeCheckInputs;
    meta = {
      inherit (p.meta) description mainProgram platforms;
      license = p.meta.license.spdxId;
    };
  };

  packageWith = pkgs: pkgs.callPackage ../package.nix { };

  flake = import ../../flake.nix;
  system = "x86_64-linux";
  flakeOutputs = flake.outputs {
    self = flakeOutputs;
    nixpkgs = {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: pkgs);
    };
  };
in
{
  report = reportWith pkgs;

  # With an overlay that provides pkgs.nixpushd, the module uses it.
  reportWithOverlay = reportWith (mkPkgs {
    extra.nixpushd = fakeDrv "nixpushd-from-overlay";
  });

  options =
    let
      opts = lib.collect lib.isOption (evalModule pkgs { }).options.services.nixpushd;
    in
    map (o: {
      name = lib.showOption o.loc;
      type = o.type.description;
      description = o.description or null;
      hasDefault = o ? default;
      default =
        if o ? defaultText then
          o.defaultText.text or o.defaultText
        else if o ? default then
          o.default
        else
          null;
    }) opts;

  package = describePackage (packageWith pkgs);
  # Which builder package.nix picks for a given default Go.
  builderFor =
    goVersion: withGo126:
    let
      r = builtins.tryEval (packageWith (mkPkgs { inherit goVersion withGo126; })).builtWith;
    in
    if r.success then r.value else null;

  # source.nix's decision for relative paths: { "nar/nar.go" = true; … }
  sourceKeeps =
    paths:
    let
      keep = (import ../source.nix { inherit lib; }).keep;
    in
    lib.genAttrs (builtins.attrNames paths) (p: keep p paths.${p});

  flake = {
    description = flake.description;
    inputs = lib.attrNames flake.inputs;
    packages = lib.mapAttrs (_: ps: lib.mapAttrs (_: p: p.pname) ps) flakeOutputs.packages;
    defaultIsPackage = flakeOutputs.packages.${system}.default.pname;
    overlayPackage = ((flakeOutputs.overlays.default pkgs pkgs).nixpushd).pname;
    nixosModules = lib.attrNames flakeOutputs.nixosModules;
    # The flake's module evaluates like ../default.nix.
    moduleExecStartPrefix =
      let
        c =
          (lib.evalModules {
            modules = [
              ./stubs.nix
              flakeOutputs.nixosModules.default
              { _module.args.pkgs = pkgs; }
              { services.nixpushd.enable = true; }
            ];
          }).config;
      in
      builtins.head (lib.splitString " " c.systemd.services.nixpushd.serviceConfig.ExecStart);
  };
}
