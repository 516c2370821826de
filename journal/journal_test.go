package journal

import (
	"log/slog"
	"strings"
	"testing"

	sdjournal "github.com/coreos/go-systemd/v22/journal"
)

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{
		"STORE_PATH": "STORE_PATH", "nar_size": "NAR_SIZE", "file-size": "FILE_SIZE",
		"_private": "PRIVATE", "9lives": "LIVES", "a.b": "A_B", "": "",
	} {
		if got := fieldName(in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHandler(t *testing.T) {
	type sent struct {
		msg  string
		pri  sdjournal.Priority
		vars map[string]string
	}
	var got []sent
	h := NewHandler(slog.LevelInfo)
	h.send = func(msg string, p sdjournal.Priority, vars map[string]string) error {
		got = append(got, sent{msg, p, vars})
		return nil
	}
	log := slog.New(h).With("target", "s3://nix-cache")
	log.Info("uploaded", "STORE_PATH", "/nix/store/abc-x", "nar_size", 120)
	log.Debug("hidden")
	log.WithGroup("upload").Error("bad", "err", "boom")
	if len(got) != 2 {
		t.Fatalf("got %d messages, want 2 (debug filtered)", len(got))
	}
	v := got[0].vars
	if v["STORE_PATH"] != "/nix/store/abc-x" || v["NAR_SIZE"] != "120" || v["TARGET"] != "s3://nix-cache" || v["SYSLOG_IDENTIFIER"] != "nixpushd" {
		t.Errorf("fields %v", v)
	}
	if got[0].pri != sdjournal.PriInfo || got[1].pri != sdjournal.PriErr {
		t.Errorf("priorities %v %v", got[0].pri, got[1].pri)
	}
	if !strings.Contains(got[0].msg, "store_path=/nix/store/abc-x") {
		t.Errorf("message %q lacks the fields", got[0].msg)
	}
	if got[1].vars["UPLOAD_ERR"] != "boom" || got[1].vars["TARGET"] != "s3://nix-cache" {
		t.Errorf("grouped fields %v", got[1].vars)
	}
}
