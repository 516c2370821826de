//go:build !linux

package testenv

import (
	"syscall"
	"time"
)

// childAttr: Pdeathsig is Linux-only (so is Nix's use here); elsewhere
// children are only stopped by the regular cleanup.
func childAttr(syscall.Signal) *syscall.SysProcAttr { return nil }

// waitStopped cannot observe thread states without /proc: give the
// signal a moment instead.
func waitStopped(int, time.Duration) error {
	time.Sleep(100 * time.Millisecond)
	return nil
}
