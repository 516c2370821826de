//go:build unix

package nar

import (
	"bytes"
	"net"
	"strings"
	"syscall"
	"testing"
)

func TestDumpPathRejectsSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, dir+"/a-file", []byte("ok"), 0o644)
	if err := syscall.Mkfifo(dir+"/fifo", 0o644); err != nil {
		t.Fatal(err)
	}
	err := DumpPath(&bytes.Buffer{}, dir)
	if err == nil || !strings.Contains(err.Error(), dir+"/fifo") || !strings.Contains(err.Error(), "FIFO") {
		t.Errorf("fifo: error %v", err)
	}

	sdir := t.TempDir()
	l, err := net.Listen("unix", sdir+"/sock")
	if err != nil {
		t.Skipf("cannot create a unix socket: %v", err)
	}
	defer l.Close()
	err = DumpPath(&bytes.Buffer{}, sdir)
	if err == nil || !strings.Contains(err.Error(), sdir+"/sock") || !strings.Contains(err.Error(), "socket") {
		t.Errorf("socket: error %v", err)
	}

	if err := DumpPath(&bytes.Buffer{}, "/dev/null"); err == nil || !strings.Contains(err.Error(), "character device") {
		t.Errorf("/dev/null: error %v", err)
	}
}
