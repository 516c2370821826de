// Package journal logs to journald natively: a slog.Handler whose every
// attribute becomes a journal field, so that `journalctl -u nixpushd
// STORE_PATH=/nix/store/…` answers "was this path uploaded?".
//
// It knows journald's protocol, nothing of what is logged.
package journal
