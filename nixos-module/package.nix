# The nixpushd package, written to be called with `callPackage`:
#
#   pkgs.callPackage ./nixos-module/package.nix { }
#
# (that is what ../default.nix, the flake's packages and overlay, and the
# NixOS module's default `package` do).
{
  lib,
  go,
  buildGoModule,
  # Only consulted when the default Go of this nixpkgs is older than go.mod
  # asks for; `null` when this nixpkgs has no such attribute.
  buildGo126Module ? null,
  xz,
}:

let
  # go.mod's `go` line is the oldest toolchain that can build us: nixpkgs
  # builds with GOTOOLCHAIN=local, so an older Go fails with "go.mod requires
  # go >= …" instead of downloading a newer one.
  goModVersion =
    let
      m = builtins.match ".*\ngo ([0-9][0-9.]*)\n.*" ("\n" + builtins.readFile ../go.mod + "\n");
    in
    if m == null then throw "nixpushd: no `go` line in go.mod" else builtins.head m;

  # Prefer the default buildGoModule: it follows nixpkgs' default Go and so
  # gets its fixes. While that default still lags go.mod (nixpkgs moves its
  # default Go some weeks after a Go release), fall back to the versioned
  # builder, buildGo126Module, which nixpkgs keeps around until the default
  # catches up. `go` and `buildGoModule` are the same toolchain in nixpkgs.
  # To force a builder: `.override { buildGoModule = …; go = <its go>; }`.
  builder =
    if lib.versionAtLeast go.version goModVersion then
      buildGoModule
    else if buildGo126Module != null then
      buildGo126Module
    else
      throw "nixpushd: go.mod needs Go >= ${goModVersion}, but this nixpkgs' default Go is ${go.version} and it has no buildGo126Module; use a newer nixpkgs";

  version = "0.1.0";
in
builder {
  pname = "nixpushd";
  inherit version;

  src = (import ./source.nix { inherit lib; }).src ../.;

  # The hash of `go mod vendor` for the committed go.mod/go.sum. The Go test
  # nixos-module/vendorhash_test.go recomputes it on every `go test ./...`
  # and prints the line to put here when go.sum changed.
  vendorHash = "sha256-eB4U/iAs/rZBxxBFgEg4fE0jBr7WmZa3cufLfxt1eY8=";

  subPackages = [ "cmd/nixpushd" ];

  # NixOS has no system liblzma.so.5: point the xz encoder at nixpkgs' one
  # (without it nixpushd falls back to the slower pure-Go encoder).
  ldflags = [
    "-s"
    "-w"
    "-X main.version=${version}"
    "-X github.com/nixpushd/nixpushd/compression.liblzmaPath=${lib.getLib xz}/lib/liblzma.so.5"
  ];

  # One binary, two names: invoked as `nixpushd-hook` it is the Nix
  # post-build-hook (socket /run/nixpushd/nixpushd.sock, spool
  # /var/lib/nixpushd/spool), so nix.conf can name it without arguments.
  postInstall = ''
    ln -s nixpushd $out/bin/nixpushd-hook
    install -Dm444 metrics/grafana-dashboard.json $out/share/nixpushd/grafana/nixpushd.json
  '';

  # The unit tests that need neither network, MinIO nor a Nix store. The
  # integration tests skip themselves under -short or when their tools are
  # missing (and CI is not set), which is the case in the build sandbox.
  # xz is the reference decoder for the xz compatibility test.
  nativeCheckInputs = [ xz ];
  checkPhase = ''
    runHook preCheck
    # Tests may refer to files next to their sources: no -trimpath here.
    export GOFLAGS=''${GOFLAGS//-trimpath/}
    go test -short -count=1 -p "$NIX_BUILD_CORES" ./nar/ ./upload/ ./queue/ ./store/ ./daemon/ ./hook/ ./journal/ ./lifecycle/ ./internal/fsutil/ ./metrics/ ./provision/
    runHook postCheck
  '';

  meta = {
    description = "Daemon that pushes what a NixOS machine builds to a self-hosted binary cache on S3";
    longDescription = ''
      nixpushd watches the Nix store and the post-build-hook, and uploads new
      store paths, signed, with their closures, to an S3 bucket (MinIO, Garage,
      AWS, …) or a file:// directory that other machines use as a substituter.
    '';
    homepage = "https://github.com/nixpushd/nixpushd";
    license = lib.licenses.mit;
    mainProgram = "nixpushd";
    # inotify, systemd notify and socket activation.
    platforms = lib.platforms.linux;
  };
}
