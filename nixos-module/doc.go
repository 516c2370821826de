// Package nixosmodule holds no Go code of its own: it tests the NixOS
// module (default.nix, package.nix, source.nix) by evaluating it with the
// real nixpkgs lib (lib.evalModules), checks that the ExecStart it writes
// is the command line the daemon accepts, and replays the docs' module
// examples.
//
// The module knows options, units and the package; what nixpushd does
// with the flags is the daemon's business.
package nixosmodule
