package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixpushd/nixpushd/hook"
)

// defaultStateDir is /var/lib/nixpushd for root (and systemd's
// StateDirectory), else a per-user directory.
func defaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return strings.Split(d, ":")[0]
	}
	if os.Geteuid() == 0 {
		return "/var/lib/nixpushd"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "nixpushd")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state", "nixpushd")
}

// defaultSocket is /run/nixpushd/nixpushd.sock for root, else (a
// single-user Nix install, where the daemon and the hook run as that user)
// $XDG_RUNTIME_DIR/nixpushd/nixpushd.sock.
func defaultSocket() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && os.Geteuid() != 0 {
		return filepath.Join(d, "nixpushd", "nixpushd.sock")
	}
	return hook.DefaultSocket
}

// defaultTarget is the cache used when none is configured: a local file://
// directory that `nix copy --from file://…` reads.
func defaultTarget(stateDir string) string {
	return "file://" + filepath.Join(stateDir, "cache")
}

// defaultConfigDir holds the secrets init writes: systemd's
// $CONFIGURATION_DIRECTORY when set, else /etc/nixpushd for root (where
// docs/nixos.md keeps them), else ~/.config/nixpushd.
func defaultConfigDir() string {
	if d := os.Getenv("CONFIGURATION_DIRECTORY"); d != "" {
		return strings.Split(d, ":")[0]
	}
	if os.Geteuid() == 0 {
		return "/etc/nixpushd"
	}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "nixpushd")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".config", "nixpushd")
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// nixClientDirs creates the directories `nix copy --from file://DIR`
// creates when they are missing (Nix 2.8: nar, realisations, log): a
// user who may only read the cache would fail with "Permission denied".
func nixClientDirs(cache string) error {
	for _, d := range []string{"nar", "realisations", "log"} {
		if err := os.MkdirAll(filepath.Join(cache, d), 0o755); err != nil {
			return fmt.Errorf("cache directory: %w", err)
		}
	}
	return nil
}
