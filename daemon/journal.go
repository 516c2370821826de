package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
)

// JournalHandler is a slog.Handler that writes to journald natively, so
// every attribute becomes a journal field: `journalctl -u nixpushd
// STORE_PATH=/nix/store/…` answers "was this path uploaded?". Attribute keys
// become upper-case field names ("nar_size" → NAR_SIZE).
type JournalHandler struct {
	level  slog.Leveler
	attrs  []slog.Attr
	groups string // prefix for keys of WithGroup
	send   func(msg string, p journal.Priority, vars map[string]string) error
}

// NewJournalHandler logs at level and above to journald.
func NewJournalHandler(level slog.Leveler) *JournalHandler {
	return &JournalHandler{level: level, send: journal.Send}
}

// UseJournal reports whether stderr is connected to journald (systemd sets
// JOURNAL_STREAM for services), i.e. whether to use a JournalHandler.
func UseJournal() bool {
	ok, err := journal.StderrIsJournalStream()
	return err == nil && ok
}

func (h *JournalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *JournalHandler) Handle(_ context.Context, r slog.Record) error {
	vars := make(map[string]string, len(h.attrs)+r.NumAttrs()+1)
	var text strings.Builder
	text.WriteString(r.Message)
	add := func(a slog.Attr) {
		name := JournalField(h.groups + a.Key)
		val := a.Value.Resolve().String()
		if name == "" {
			return
		}
		vars[name] = val
		// Also in the message, so plain `journalctl -u nixpushd` reads well.
		fmt.Fprintf(&text, " %s=%s", strings.ToLower(name), quoteIfNeeded(val))
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool { add(a); return true })
	vars["SYSLOG_IDENTIFIER"] = "nixpushd"
	return h.send(text.String(), journalPriority(r.Level), vars)
}

func (h *JournalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	for i := range h2.attrs[len(h.attrs):] {
		h2.attrs[len(h.attrs)+i].Key = h.groups + h2.attrs[len(h.attrs)+i].Key
	}
	return &h2
}

func (h *JournalHandler) WithGroup(name string) slog.Handler {
	h2 := *h
	h2.groups = h.groups + name + "_"
	return &h2
}

// JournalField turns an attribute key into a valid journal field name:
// upper case letters, digits and underscores, not starting with "_" or a
// digit (fields starting with "_" are reserved for journald itself).
func JournalField(key string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(key) {
		switch {
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(b.String(), "_0123456789")
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

func journalPriority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\"=") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
