# NixOS module for nixpushd: `services.nixpushd`.
#
#   imports = [ "${nixpushd-src}/nixos-module" ];   # or the flake's nixosModules.default
#   services.nixpushd = {
#     enable = true;
#     cache.url = "s3://nix-cache?endpoint=s3.homelab.local";
#     credentialsFile = "/run/keys/nixpushd-aws";    # AWS_ACCESS_KEY_ID=…, AWS_SECRET_ACCESS_KEY=…
#     secretKeyFile = "/run/keys/nixpushd-signing";  # nix key generate-secret --key-name …
#     pins.system = "/run/current-system";           # kept by gc on every machine
#     gc.enable = true;                              # nixpushd-gc.timer, daily
#   };
#
# What it sets up, and why (nixpushd.service / nixpushd.socket next to this
# file are the same units for machines without NixOS; keep them in step,
# the tests compare them):
#
# - nixpushd.socket owns /run/nixpushd/nixpushd.sock, root-only (0600): the
#   nix-daemon runs the post-build-hook as root, ordinary users cannot
#   inject paths. systemd creates /run/nixpushd for it. The service has no
#   RuntimeDirectory=: systemd would delete /run/nixpushd, and with it the
#   socket's inode, whenever the service stops.
# - nixpushd.service runs `nixpushd daemon` as the system user nixpushd,
#   socket-activated (first LISTEN_FDS listener) and started at boot, since
#   it also watches /nix/store. Type=notify with a watchdog.
# - Secrets never enter the Nix store: the options take path strings, and
#   systemd hands the files to the service with LoadCredential=, so they
#   can stay root-only (0600) on disk.
# - The daemon only needs to read /nix/store and the Nix database, which
#   ProtectSystem=strict leaves readable (read-only); it writes only its
#   StateDirectory (queue, spool, default file:// cache) and CacheDirectory
#   (compressed NARs waiting for upload).
# - gc.enable adds nixpushd-gc.service (oneshot, same user, hardening and
#   cache as the daemon) and nixpushd-gc.timer.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.nixpushd;

  inherit (lib)
    mkOption
    mkEnableOption
    mkIf
    mkMerge
    types
    literalExpression
    ;

  # Fixed paths. The hook (`nixpushd-hook`, run by Nix with no arguments)
  # has the same ones built in, so they are not options.
  # The state directory, /var/lib/nixpushd, is StateDirectory=nixpushd: the
  # daemon takes it from $STATE_DIRECTORY.
  socketPath = "/run/nixpushd/nixpushd.sock";
  stateDir = "/var/lib/nixpushd"; # StateDirectory=nixpushd
  tempDir = "/var/cache/nixpushd"; # CacheDirectory=nixpushd
  user = "nixpushd";

  storeDir = builtins.storeDir or "/nix/store";

  # ---------------------------------------------------------------- cache URL

  # Query parameters `nixpushd daemon --to` accepts in an s3:// URL.
  s3Params = [
    "endpoint"
    "region"
    "scheme"
    "profile"
  ];

  # The parameters of an s3:// URL as a list of { name, value }, or null
  # when a parameter is not of the form name=value.
  s3Query =
    url:
    let
      m = builtins.match "[^?]*[?](.*)" url;
      parts = lib.filter (p: p != "") (lib.splitString "&" (builtins.head m));
      parse =
        p:
        let
          kv = builtins.match "([^=]+)=(.*)" p;
        in
        if kv == null then
          null
        else
          {
            name = builtins.elemAt kv 0;
            value = builtins.elemAt kv 1;
          };
      parsed = map parse parts;
    in
    if m == null then
      [ ]
    else if lib.elem null parsed then
      null
    else
      parsed;

  # Why `url` is not something the daemon accepts, or null when it is.
  # Mirrors the daemon's own check (upload.ParseS3URL), so that a typo
  # fails `nixos-rebuild` instead of a service start.
  urlProblem =
    url:
    if lib.hasPrefix "file://" url then
      if builtins.match "file:///[^?#]*" url == null then
        "a file:// URL needs an absolute directory and no parameters, e.g. file:///var/lib/nix-cache"
      else
        null
    else if !(lib.hasPrefix "s3://" url) then
      "use s3://BUCKET?endpoint=HOST[:PORT]&region=R&scheme=http|https&profile=P or file:///DIR"
    else
      let
        bucket = builtins.head (builtins.match "s3://([^?]*).*" url);
        query = s3Query url;
        unknown = lib.filter (p: !(lib.elem p.name s3Params)) query;
        bad = name: re: lib.any (p: p.name == name && builtins.match re p.value == null) query;
      in
      if builtins.match "[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]" bucket == null then
        "the bucket name \"${bucket}\" must be 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit (and the bucket comes right after s3://, with no path)"
      else if
        lib.hasInfix ".." bucket
        || lib.hasInfix ".-" bucket
        || lib.hasInfix "-." bucket
        || builtins.match "[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+" bucket != null
      then
        "the bucket name \"${bucket}\" is not valid (no \"..\", \".-\" or \"-.\", and not an IP address)"
      else if query == null then
        "the query must be NAME=VALUE pairs joined by &"
      else if unknown != [ ] then
        "unknown parameter \"${(builtins.head unknown).name}\" (known: ${lib.concatStringsSep ", " s3Params}; compression and signing are options of services.nixpushd, not of the URL)"
      else if bad "endpoint" "https?://[^/?#]+/?|[^/?#]+" then
        "endpoint= must be HOST or HOST:PORT (optionally with http:// or https:// in front)"
      else if bad "scheme" "https?" then
        "scheme= must be http or https"
      else if bad "region" "[^/?#&]+" || bad "profile" "[^/?#&]+" then
        "region= and profile= must not be empty"
      else
        null;

  url = if cfg.cache.url == null then "" else cfg.cache.url;
  urlError = if url == "" then null else urlProblem url;
  urlRegion =
    let
      q = s3Query url;
    in
    if q == null then null else lib.findFirst (p: p.name == "region") null q;

  # The URL handed to --to: cache.url with cache.region added (the daemon
  # takes the region only inside the URL). null: the daemon's default,
  # file:///var/lib/nixpushd/cache.
  effectiveUrl =
    if url == "" then
      null
    else if cfg.cache.region == null || urlRegion != null || !(lib.hasPrefix "s3://" url) then
      url
    else
      url + (if lib.hasInfix "?" url then "&" else "?") + "region=${cfg.cache.region}";

  # ------------------------------------------------------------------ secrets

  # Both secret options take a path as a string. A Nix path literal
  # (./secret.key) is accepted by the type only to be rejected by an
  # assertion with a useful message: interpolating it would copy the file
  # into the world-readable store.
  secretPath = types.mkOptionType {
    name = "secretPath";
    description = "absolute path, as a string, of a file outside the Nix store";
    check = x: builtins.isString x || builtins.isPath x;
    merge = lib.mergeEqualOption;
  };

  # Assertions for one secret file option.
  secretAssertions =
    name: what: example: value:
    let
      opt = "services.nixpushd.${name}";
      str = toString value; # no store copy, unlike "${value}"
      inStore = lib.hasPrefix "${storeDir}/" str;
    in
    lib.optionals (value != null) [
      {
        assertion = !(builtins.isPath value);
        message =
          "${opt} is the Nix path literal ${str}; Nix would copy ${what} into the world-readable Nix store. "
          + "Give the path as a string of a file outside the store instead, e.g. ${opt} = \"${example}\";"
          + lib.optionalString inStore " (this file is already in the store, probably because the flake's source is: treat ${what} as leaked and replace it)";
      }
      {
        assertion = builtins.isPath value || !inStore;
        message =
          "${opt} = \"${str}\" is in the Nix store, which every user can read: ${what} would leak. "
          + "Keep it outside the store (e.g. /run/keys/ or /var/lib/secrets/, mode 0600, or via agenix/sops-nix) and set ${opt} to that path as a string; "
          + "nixpushd.service reads it through systemd's LoadCredential=.";
      }
      {
        assertion = builtins.isPath value || lib.hasPrefix "/" str;
        message = "${opt} = \"${str}\" must be an absolute path.";
      }
    ];

  # ------------------------------------------------------------- ExecStart

  # One argument for ExecStart=. systemd is not a shell: it splits on
  # whitespace, understands "…" with C escapes (\\, \", \n, \uXXXX …),
  # replaces %-specifiers and $VARIABLES. A JSON string is a valid
  # systemd double-quoted word, and %% / $$ stand for literal % and $.
  # (lib.escapeShellArg would be wrong here: a regex like "a\.b" would lose
  # its backslash to systemd's unescaping.)
  escapeSystemdArg = arg: lib.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON arg);

  nonEmpty = s: s != null && s != "";

  # The daemon's flags, all as --flag=value (one word each, so a value
  # starting with "-" is never taken for a flag).
  daemonArgs = [
    "daemon"
  ]
  ++ lib.optional (effectiveUrl != null) "--to=${effectiveUrl}"
  ++ [ "--compression=${cfg.compression}" ]
  ++ lib.optional (cfg.compressionLevel != 0) "--compression-level=${toString cfg.compressionLevel}"
  ++ lib.optional (cfg.jobs != null) "--jobs=${toString cfg.jobs}"
  ++ [
    "--temp-dir=${tempDir}"
    "--log-level=${cfg.logLevel}"
    "--watch-store=${lib.boolToString cfg.watchStore}"
    "--reconcile-interval=${cfg.reconcileInterval}"
    "--skip-signed-by=${lib.concatStringsSep "," cfg.skipSignedBy}"
    "--push-derivations=${lib.boolToString cfg.pushDerivations}"
  ]
  # Only when not the daemon's defaults, like compressionLevel.
  ++ lib.optional cfg.narListings "--nar-listings=true"
  ++ lib.optional cfg.indexDebugInfo "--index-debug-info=true"
  ++ lib.optional cfg.buildLogs "--build-logs=true"
  ++ lib.optional (!cfg.realisations) "--realisations=false"
  ++ lib.optional (nonEmpty cfg.include) "--include=${cfg.include}"
  ++ lib.optional (nonEmpty cfg.exclude) "--exclude=${cfg.exclude}"
  ++ lib.optional (cfg.caFile != null) "--ca-file=${cfg.caFile}"
  ++ lib.optional (cfg.statusGroup != null) "--status-group=${cfg.statusGroup}"
  ++ lib.mapAttrsToList (name: path: "--pin=${name}=${path}") cfg.pins
  ++ lib.optional cfg.metrics.enable "--metrics-listen=${cfg.metrics.listen}";

  # The port of metrics.listen (HOST:PORT, HOST possibly [v6]), or null.
  metricsPort =
    let
      m = builtins.match ".+:([0-9]{1,5})" cfg.metrics.listen;
    in
    if m == null then null else lib.toInt (builtins.head m);

  # %d is the service's credentials directory ($CREDENTIALS_DIRECTORY),
  # where LoadCredential= puts root-only files readable by the service.
  credentialArgs =
    lib.optional (cfg.secretKeyFile != null) "--secret-key-file=%d/secret-key"
    ++ lib.optional (cfg.credentialsFile != null) "--credentials-file=%d/aws-credentials";

  execStart = lib.concatStringsSep " " (
    [ "${cfg.package}/bin/nixpushd" ]
    ++ map escapeSystemdArg daemonArgs
    ++ credentialArgs
    # Last, so that they win: the Go flag package keeps the last value.
    ++ map escapeSystemdArg cfg.extraArgs
  );

  # ------------------------------------------------------------------ pins

  # As the daemon's CheckPinName: names safe as object keys everywhere.
  pinNameOk = name: builtins.match "[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}" name != null;
  badPinNames = lib.filter (n: !(pinNameOk n)) (lib.attrNames cfg.pins);
  relativePins = lib.attrNames (lib.filterAttrs (_: p: !(lib.hasPrefix "/" p)) cfg.pins);

  # -------------------------------------------------------------------- gc

  # The daemon's cache, spelt out: without cache.url the daemon defaults
  # to file://$STATE_DIRECTORY/cache.
  gcUrl = if effectiveUrl == null then "file://${stateDir}/cache" else effectiveUrl;
  gcCredentialsFile =
    if cfg.gc.credentialsFile != null then cfg.gc.credentialsFile else cfg.credentialsFile;

  gcExecStart = lib.concatStringsSep " " (
    [ "${cfg.package}/bin/nixpushd" ]
    ++ map escapeSystemdArg [
      "gc"
      "--to=${gcUrl}"
      "--keep=${cfg.gc.keep}"
      "--grace=${cfg.gc.grace}"
      "--state-dir=${stateDir}"
      "--log-level=${cfg.logLevel}"
    ]
    ++ lib.optional (cfg.caFile != null) (escapeSystemdArg "--ca-file=${cfg.caFile}")
    ++ lib.optional (gcCredentialsFile != null) "--credentials-file=%d/aws-credentials"
  );

  # ------------------------------------------------------------- hardening

  # Shared by nixpushd.service and nixpushd-gc.service. The daemon reads
  # /nix/store and the Nix database /nix/var/nix/db/db.sqlite, which
  # ProtectSystem=strict leaves readable but not writable, as wanted. The
  # database is in WAL mode: a reader that cannot write in /nix/var/nix/db
  # can open it only while db.sqlite-shm and -wal exist, i.e. while another
  # process (a nix-daemon worker) has it open; SQLite deletes both when the
  # last connection closes. Once open, the daemon's own connection keeps
  # them. If they are missing when it starts, it falls back to
  # `nix path-info` (through the nix-daemon socket).
  hardening = {
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    NoNewPrivileges = true;
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    RestrictAddressFamilies = "AF_UNIX AF_INET AF_INET6";
    # Blocked calls fail with EPERM instead of killing the process.
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
    ];
    SystemCallErrorNumber = "EPERM";
    SystemCallArchitectures = "native";
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible";
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    RemoveIPC = true;
    PrivateMounts = true;
    # Not PrivateUsers=: the hook's peer uid (root) would read as
    # "nobody" on the socket.
  };

  # gc.keep, gc.grace: whole days ("30d") or a Go duration ("12h").
  gcDuration = types.strMatching "[0-9]+d|([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|ms|s|m|h)(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|ms|s|m|h))*";

  # Go's time.ParseDuration syntax.
  goDuration = types.strMatching "([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|ms|s|m|h)(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|ms|s|m|h))*";

  defaultPackage = pkgs.callPackage ./package.nix { };
in
{
  options.services.nixpushd = {
    enable = mkEnableOption "nixpushd, which pushes every store path this machine builds to a binary cache";

    package = mkOption {
      type = types.package;
      # Built from the same checkout as this module, so that the flags the
      # module passes are the ones the daemon knows (not pkgs.nixpushd,
      # which could be another version).
      default = defaultPackage;
      defaultText = literalExpression "pkgs.callPackage ./package.nix { } # from this module's checkout";
      example = literalExpression "pkgs.nixpushd # with the flake's overlays.default";
      description = "The nixpushd package. Its `bin/nixpushd-hook` becomes Nix's post-build-hook.";
    };

    cache = {
      url = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "s3://nix-cache?endpoint=s3.homelab.local&profile=nixbuilder";
        description = ''
          The binary cache to push to, as for `nixpushd push --to`:
          `s3://BUCKET?endpoint=HOST[:PORT]&region=R&scheme=http|https&profile=P`
          (any S3 server: MinIO, Garage, Ceph, AWS; the bucket is the part
          right after `s3://`) or `file:///DIR`.
          `null` (or "") pushes to the local directory
          `file:///var/lib/nixpushd/cache`.
          Credentials do not go here: see `credentialsFile`.
        '';
      };

      region = mkOption {
        type = types.nullOr (types.strMatching "[A-Za-z0-9_.-]+");
        default = null;
        example = "us-east-1";
        description = ''
          S3 region, added to `cache.url` as `region=` (the daemon takes it
          only inside the URL). `null` leaves it to the URL, or to the
          server's default. Must not contradict a `region=` already in the URL.
        '';
      };
    };

    credentialsFile = mkOption {
      type = types.nullOr secretPath;
      default = null;
      example = "/run/keys/nixpushd-aws";
      description = ''
        Path, as a string, of an environment file with the S3 credentials:
        `AWS_ACCESS_KEY_ID=…` and `AWS_SECRET_ACCESS_KEY=…` lines (the MinIO
        user allowed to write the bucket). It is read by systemd
        (LoadCredential=) when the service starts and never copied into the
        Nix store, so it can be owned by root with mode 0600.
        `null`: no file; nixpushd then looks in the service's environment,
        then the shared credentials file (`$AWS_SHARED_CREDENTIALS_FILE` or
        `~/.aws/credentials`, `[$AWS_PROFILE]`/`[default]`, or `?profile=`
        in the URL), then an EC2/ECS instance role, whose session it renews.
        The values are read by nixpushd only, never exported to the
        `nix path-info` it runs.
      '';
    };

    caFile = mkOption {
      type = types.nullOr (types.either types.path types.str);
      default = null;
      example = literalExpression "./homelab-ca.pem";
      description = ''
        PEM file of the certificate authority that signed the S3 server's
        certificate (`--ca-file`), trusted in addition to the system roots,
        by the daemon and by gc. A CA is not secret: a path literal (copied
        into the Nix store) or an absolute path as a string both work.
        To trust it system-wide instead, for Nix's own downloads too, use
        `security.pki.certificateFiles`.
      '';
    };

    secretKeyFile = mkOption {
      type = types.nullOr secretPath;
      default = null;
      example = "/run/keys/nixpushd-signing";
      description = ''
        Path, as a string, of the signing key written by
        `nix key generate-secret --key-name HOST-1`. Read through systemd's
        LoadCredential= and never copied into the Nix store. Clients trust
        what nixpushd pushes by listing the public key
        (`nix key convert-secret-to-public`) in
        `nix.settings.extra-trusted-public-keys`.
        `null`: the daemon creates a key on its first start in
        /var/lib/nixpushd/secret-key (public key in
        /var/lib/nixpushd/public-key, also shown by `nixpushd status`).
        That key lives and dies with the state directory; for a cache that
        clients trust for years, create one yourself and set this option.
      '';
    };

    compression = mkOption {
      type = types.enum [
        "xz"
        "zstd"
        "none"
      ];
      default = "xz";
      description = "Compression of the uploaded NARs. zstd is much faster to compress and decompress, xz a little smaller.";
    };

    compressionLevel = mkOption {
      type = types.ints.between 0 22;
      default = 0;
      example = 19;
      description = "zstd level 1-22, or xz preset 1-9 (used when liblzma is available; the package provides it; presets 7-9 run as 6, which gives the same output on nixpushd's chunks with a fraction of the memory). 0 is the daemon's default (zstd 3, xz 2).";
    };

    jobs = mkOption {
      type = types.nullOr types.ints.positive;
      default = null;
      example = 4;
      description = "How many store paths are serialised, compressed and uploaded at once. `null`: the number of CPUs.";
    };

    watchStore = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Watch /nix/store for new valid paths (inotify), which also catches
        paths built outside the nix-daemon's post-build-hook, e.g. by
        `nix-build` of a single-user store or imported with `nix-store --import`.
      '';
    };

    postBuildHook = mkOption {
      type = types.bool;
      default = cfg.enable;
      defaultText = literalExpression "config.services.nixpushd.enable";
      description = ''
        Set `nix.settings.post-build-hook` to `nixpushd-hook`, which hands
        every build's outputs to the daemon right after the build (or leaves
        them in its spool while the daemon is down; it never fails a build).
        Requires `enable`.
      '';
    };

    skipSignedBy = mkOption {
      type = types.listOf (types.strMatching "[^,[:space:]]+");
      default = [ "cache.nixos.org-1" ];
      example = [
        "cache.nixos.org-1"
        "nix-community.cachix.org-1"
      ];
      description = ''
        Key names (the part before ":" of a public key) of upstream caches.
        A path signed by one of them was downloaded, not built here, and is
        not pushed on its own (it is still pushed when something built here
        refers to it). `[ ]` pushes everything.
      '';
    };

    include = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "^(my-|hello-)";
      description = "If set, push only store paths whose name (the part after the hash) matches this Go regular expression (RE2 syntax).";
    };

    exclude = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "-(source|src)$";
      description = "Do not push store paths whose name (the part after the hash) matches this Go regular expression (RE2 syntax).";
    };

    pushDerivations = mkOption {
      type = types.bool;
      default = false;
      description = "Also push `.drv` files.";
    };

    narListings = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Also write `<hash>.ls`, the JSON listing of each NAR (what Nix writes
        with `write-nar-listing=true`), read by `nix store ls --store`,
        `nix store cat --store` and nix-index. One small object per path,
        written after the NAR and before the narinfo: about 1.5 times the
        requests and time for a closure of small paths, hence off by default.
      '';
    };

    indexDebugInfo = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Also write `debuginfo/<build-id>` links for paths that hold
        `lib/debug/.build-id/xx/*.debug` files (what Nix writes with
        `index-debug-info=true`), for dwarffs and debuginfod servers.
        `nixpushd gc` deletes a link once no narinfo names its NAR.
      '';
    };

    buildLogs = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Also upload the build log of each derivation the post-build-hook
        reports, from Nix's `/nix/var/log/nix/drvs` to `log/<drv>` in the
        cache, as `nix store copy-log --to` would: `nix log --store URL`
        and `nix-store --store URL -l` read it. Off by default because a
        build log holds whatever the build printed, secrets included, and
        the cache is usually readable by many. One small PUT per build.
      '';
    };

    realisations = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Upload the realisations (`realisations/<drv hash>!<output>.doi`,
        signed) of pushed outputs of content-addressed derivations, as
        `nix copy` does, so that clients with the `ca-derivations`
        experimental feature substitute such builds by their derivation.
        Read from the Nix database; paths without realisations cost one
        query per batch, hence on by default.
      '';
    };

    reconcileInterval = mkOption {
      type = goDuration;
      default = "5m";
      example = "30m";
      description = ''
        How often the daemon looks in the Nix database for paths registered
        since its last look that no watcher event or hook reported (Nix
        does not promise those events). A Go duration, at least 1s.
      '';
    };

    logLevel = mkOption {
      type = types.enum [
        "debug"
        "info"
        "warn"
        "error"
      ];
      default = "info";
      description = "Log level of the daemon (it logs to the journal: `journalctl -u nixpushd`).";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "--max-active=16"
        "--shutdown-timeout=1m"
      ];
      description = "More arguments for `nixpushd daemon` (see `nixpushd daemon -h`). They come last, so they override the ones this module sets.";
    };

    pins = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        system = "/run/current-system";
      };
      description = ''
        Named roots stored in the bucket, NAME = PATH (`--pin NAME=PATH`).
        The daemon pushes the closure of what PATH resolves to first, then
        points the pin at it, and does so again whenever PATH (typically a
        symlink such as /run/current-system) changes. `nixpushd gc`, on
        every machine sharing the bucket, keeps the closures of all pins.
        NAME: 1-100 letters, digits, `.`, `_` or `-`, not starting with
        `.`; use one per machine, e.g. the host name. PATH: absolute.
      '';
    };

    statusGroup = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "wheel";
      description = ''
        A group whose members may run `nixpushd status` without root
        (the socket becomes 0660 for that group). Handing paths to the
        daemon (PUSH) stays limited to root and the daemon's user.
        `null`: only root.
      '';
    };

    metrics = {
      enable = mkEnableOption ''
        Prometheus metrics at http://`metrics.listen`/metrics
        (`nixpushd daemon --metrics-listen`): queue, uploads, skips,
        failures, bytes, durations, existence checks, retries and the last
        gc and verify results. See "Monitoring" in docs/operations.md for the
        metrics, example alerts and a Grafana dashboard'';

      listen = mkOption {
        type = types.str;
        default = "127.0.0.1:9101";
        example = "[::1]:9101";
        description = ''
          HOST:PORT the daemon serves the metrics on. The default is
          reachable from this machine only. For a Prometheus elsewhere,
          give an address of a trusted network and open the port yourself
          (`networking.firewall.allowedTCPPorts`): the metrics hold no
          secrets, but show the queue, the upload volume and the failure
          rate. The port must be 1024 or above (nixpushd.service has no
          capabilities).
        '';
      };
    };

    gc = {
      enable = mkEnableOption ''
        nixpushd-gc.timer, which runs `nixpushd gc` on the cache at
        `gc.dates`: it deletes what no pin keeps and is older than
        `gc.keep`. Requires `enable`'';

      keep = mkOption {
        type = gcDuration;
        default = "30d";
        example = "14d";
        description = "Keep paths pushed less than this long ago, pinned or not (`--keep`): whole days (`30d`) or a Go duration (`12h`).";
      };

      grace = mkOption {
        type = gcDuration;
        default = "1h";
        example = "6h";
        description = ''
          Do not delete objects younger than this (`--grace`), so that a
          push running on another machine during gc keeps what it has
          uploaded so far: whole days or a Go duration.
        '';
      };

      dates = mkOption {
        type = types.str;
        default = "daily";
        example = "Sun 03:00";
        description = "When to run gc, as a systemd calendar event (OnCalendar=, see systemd.time(7)). Runs missed while the machine was off happen at the next boot (Persistent=).";
      };

      randomizedDelaySec = mkOption {
        type = types.str;
        default = "0";
        example = "45min";
        description = "Delay each run by a random time up to this (RandomizedDelaySec=), so that machines sharing a bucket do not all start gc at once.";
      };

      credentialsFile = mkOption {
        type = types.nullOr secretPath;
        default = null;
        example = "/run/keys/nixpushd-gc-aws";
        description = ''
          Path, as a string, of an environment file with S3 credentials for
          gc, in the format of `credentialsFile`: a user that may also
          delete (s3:DeleteObject), so that the daemon's own credentials can
          stay write-only. Handed to nixpushd-gc.service by LoadCredential=,
          never copied into the Nix store.
          `null`: gc uses `credentialsFile`.
        '';
      };
    };
  };

  config = mkMerge [
    # Checked even when the service is off: a hook without its daemon would
    # fill the spool forever.
    {
      assertions = [
        {
          assertion = cfg.postBuildHook -> cfg.enable;
          message = "services.nixpushd.postBuildHook = true needs services.nixpushd.enable = true: the hook only hands paths to the daemon, and without it they would pile up in /var/lib/nixpushd/spool. Enable the service or drop postBuildHook.";
        }
        {
          assertion = cfg.gc.enable -> cfg.enable;
          message = "services.nixpushd.gc.enable = true needs services.nixpushd.enable = true: gc runs as the nixpushd user, on the cache the daemon pushes to.";
        }
      ];
    }

    (mkIf cfg.enable {
      assertions = [
        {
          assertion = !cfg.metrics.enable || (metricsPort != null && metricsPort >= 1024 && metricsPort <= 65535);
          message = "services.nixpushd.metrics.listen = \"${cfg.metrics.listen}\": want HOST:PORT with a port from 1024 to 65535 (nixpushd.service has no capability to bind lower ports), e.g. \"127.0.0.1:9101\".";
        }
        {
          assertion = urlError == null;
          message = "services.nixpushd.cache.url = \"${url}\": ${toString urlError}.";
        }
        {
          assertion = cfg.cache.region == null || lib.hasPrefix "s3://" url;
          message = "services.nixpushd.cache.region only applies to an s3:// cache.url, but cache.url is ${if url == "" then "unset (the local file:// cache)" else "\"${url}\""}.";
        }
        {
          assertion = cfg.cache.region == null || urlRegion == null || urlRegion.value == cfg.cache.region;
          message = "services.nixpushd.cache.region = \"${toString cfg.cache.region}\" contradicts region=${
            if urlRegion == null then "" else urlRegion.value
          } in cache.url; set the region in one place only.";
        }
        {
          assertion =
            cfg.compressionLevel == 0
            || cfg.compression == "zstd"
            || (cfg.compression == "xz" && cfg.compressionLevel <= 9);
          message = "services.nixpushd.compressionLevel = ${toString cfg.compressionLevel} does not fit compression = \"${cfg.compression}\": use 1-9 with xz, 1-22 with zstd, 0 with none.";
        }
        {
          assertion = badPinNames == [ ];
          message = "services.nixpushd.pins: bad pin name${lib.optionalString (lib.length badPinNames > 1) "s"} ${
            lib.concatMapStringsSep ", " builtins.toJSON badPinNames
          }: use 1-100 letters, digits, '.', '_' or '-', not starting with '.'.";
        }
        {
          assertion = relativePins == [ ];
          message = "services.nixpushd.pins: the path of ${lib.concatMapStringsSep ", " builtins.toJSON relativePins} must be absolute, e.g. \"/run/current-system\".";
        }
      ]
      ++ secretAssertions "secretKeyFile" "the signing key" "/etc/nixpushd/secret-key" cfg.secretKeyFile
      ++ secretAssertions "credentialsFile" "the S3 credentials" "/etc/nixpushd/aws-credentials" cfg.credentialsFile
      ++ secretAssertions "gc.credentialsFile" "the S3 credentials" "/etc/nixpushd/gc-aws-credentials" cfg.gc.credentialsFile;

      warnings =
        lib.optional (cfg.secretKeyFile == null) "services.nixpushd.secretKeyFile is not set: nixpushd signs with a key it creates in /var/lib/nixpushd/secret-key (public key in /var/lib/nixpushd/public-key), which is lost with that directory. For a key you keep, run `nixpushd init` or `(umask 077; set -o noclobber; mkdir -p /etc/nixpushd; nix --extra-experimental-features nix-command key generate-secret --key-name HOST-nixpushd-1 > /etc/nixpushd/secret-key)` and set secretKeyFile = \"/etc/nixpushd/secret-key\"."
        ++ lib.optional (!cfg.watchStore && !cfg.postBuildHook) "services.nixpushd: watchStore and postBuildHook are both off, so nixpushd only finds new paths when it reconciles with the Nix database (every ${cfg.reconcileInterval}).";

      nix.settings = mkIf cfg.postBuildHook {
        post-build-hook = "${cfg.package}/bin/nixpushd-hook";
      };

      environment.systemPackages = [ cfg.package ];

      users.users.${user} = {
        isSystemUser = true;
        group = user;
        description = "nixpushd binary cache pusher";
      };
      users.groups.${user} = { };

      systemd.sockets.nixpushd = {
        description = "nixpushd post-build-hook socket";
        wantedBy = [ "sockets.target" ];
        listenStreams = [ socketPath ];
        socketConfig = {
          # The nix-daemon runs the hook as root. The daemon refuses PUSH
          # from anyone but root and its own user (it checks the peer's
          # uid); members of statusGroup may connect to ask for STATUS.
          # systemd creates /run/nixpushd (0755).
          SocketUser = "root";
          SocketGroup = if cfg.statusGroup != null then cfg.statusGroup else "root";
          SocketMode = if cfg.statusGroup != null then "0660" else "0600";
          DirectoryMode = "0755";
        };
      };

      systemd.services.nixpushd = {
        description = "nixpushd: push new Nix store paths to the binary cache";
        documentation = [ "https://github.com/nixpushd/nixpushd" ];
        # Started at boot, not only when the hook connects: it also watches
        # the store and drains the spool.
        wantedBy = [ "multi-user.target" ];
        requires = [ "nixpushd.socket" ];
        wants = [ "network-online.target" ];
        after = [
          "nixpushd.socket"
          "network-online.target"
        ];
        # `nix path-info`, the fallback when the Nix database cannot be read.
        path = [ config.nix.package ];
        # A daemon that keeps failing at start (a bad key file, a typo in
        # extraArgs) ends up "failed" instead of restarting forever.
        unitConfig = {
          StartLimitIntervalSec = "5min";
          StartLimitBurst = 10;
        };

        serviceConfig = {
          Type = "notify";
          NotifyAccess = "main";
          ExecStart = execStart;
          Restart = "on-failure";
          RestartSec = "5s";
          WatchdogSec = "60s";
          # The daemon gives in-flight uploads --shutdown-timeout (30s) on
          # SIGTERM before it requeues them.
          TimeoutStopSec = "90s";

          User = user;
          Group = user;
          # /var/lib/nixpushd: queue, spool (where the root-run hook leaves
          # paths while the daemon is down), default file:// cache. Listing
          # the spool makes systemd create it with the right owner even if
          # the hook ran first. The daemon finds it in $STATE_DIRECTORY.
          StateDirectory = [
            "nixpushd"
            "nixpushd/spool"
          ];
          # 0755: the default file:// cache in it is readable by local
          # users; the queue, spool and secret key have their own 0600/0700.
          StateDirectoryMode = "0755";
          # /var/cache/nixpushd: compressed NARs waiting for upload
          # (--temp-dir). Not /tmp, which may be a small tmpfs.
          CacheDirectory = "nixpushd";
          CacheDirectoryMode = "0700";
          # No RuntimeDirectory=: /run/nixpushd belongs to nixpushd.socket.
          LoadCredential =
            lib.optional (cfg.secretKeyFile != null) "secret-key:${toString cfg.secretKeyFile}"
            ++ lib.optional (cfg.credentialsFile != null) "aws-credentials:${toString cfg.credentialsFile}";
          UMask = "0077";
        }
        // hardening;
      };
    })

    (mkIf (cfg.enable && cfg.gc.enable) {
      systemd.services.nixpushd-gc = {
        description = "nixpushd: delete unpinned old paths from the binary cache";
        documentation = [ "https://github.com/nixpushd/nixpushd" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];

        serviceConfig = {
          Type = "oneshot";
          ExecStart = gcExecStart;
          User = user;
          Group = user;
          # --state-dir, and the default file:// cache.
          StateDirectory = "nixpushd";
          # 0755: the default file:// cache in it is readable by local
          # users; the queue, spool and secret key have their own 0600/0700.
          StateDirectoryMode = "0755";
          LoadCredential = lib.optional (
            gcCredentialsFile != null
          ) "aws-credentials:${toString gcCredentialsFile}";
          UMask = "0077";
        }
        // hardening;
      };

      systemd.timers.nixpushd-gc = {
        description = "nixpushd: garbage-collect the binary cache";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnCalendar = cfg.gc.dates;
          Persistent = true;
          RandomizedDelaySec = cfg.gc.randomizedDelaySec;
        };
      };
    })
  ];
}
