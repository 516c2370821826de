# Stand-ins for the NixOS options the nixpushd module sets, so the module
# can be evaluated with nothing but nixpkgs' lib (lib.evalModules) in the
# Go tests. The names and shapes follow NixOS (nixos/modules/system/boot/
# systemd.nix, services/system/nix-daemon.nix, config/users-groups.nix,
# misc/assertions.nix); only what the module uses is declared, and nothing
# is freeform except nix.settings (as in NixOS), so a misspelt option name
# in the module fails the tests.
{ lib, ... }:
let
  inherit (lib) mkOption types;

  # Like NixOS' unitOption: a value of a [Service]/[Socket]/… key; lists
  # become repeated lines.
  unitOption = types.oneOf [
    types.bool
    types.int
    types.str
    (types.listOf types.str)
  ];
  unitNames = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };
  unitDescription = mkOption {
    type = types.str;
    default = "";
  };

  service = types.submodule {
    options = unitCommon // {
      requiredBy = unitNames;
      wants = unitNames;
      path = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      environment = mkOption {
        type = types.attrsOf types.str;
        default = { };
      };
      restartTriggers = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      serviceConfig = section;
    };
  };

  # What every unit kind declares, and the [Unit] section.
  unitCommon = {
    description = unitDescription;
    documentation = unitNames;
    wantedBy = unitNames;
    requires = unitNames;
    after = unitNames;
    before = unitNames;
    unitConfig = section;
  };
  section = mkOption {
    type = types.attrsOf unitOption;
    default = { };
  };

  socket = types.submodule {
    options = unitCommon // {
      listenStreams = unitNames;
      socketConfig = section;
    };
  };

  timer = types.submodule {
    options = unitCommon // {
      timerConfig = section;
    };
  };

  fakePackage = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf (
        types.submodule {
          options = {
            assertion = mkOption { type = types.bool; };
            message = mkOption { type = types.str; };
          };
        }
      );
      default = [ ];
    };
    warnings = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };

    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };

    nix.package = mkOption {
      type = types.package;
      default = fakePackage "nix-2.8.0";
    };
    nix.settings = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf (
          types.oneOf [
            types.bool
            types.int
            types.str
            (types.listOf types.str)
          ]
        );
      };
      default = { };
    };

    users.users = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            isSystemUser = mkOption {
              type = types.bool;
              default = false;
            };
            group = mkOption {
              type = types.str;
              default = "";
            };
            description = mkOption {
              type = types.str;
              default = "";
            };
          };
        }
      );
      default = { };
    };
    users.groups = mkOption {
      type = types.attrsOf (types.submodule { });
      default = { };
    };

    systemd.services = mkOption {
      type = types.attrsOf service;
      default = { };
    };
    systemd.sockets = mkOption {
      type = types.attrsOf socket;
      default = { };
    };
    systemd.timers = mkOption {
      type = types.attrsOf timer;
      default = { };
    };
  };
}
