package journal

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	sdjournal "github.com/coreos/go-systemd/v22/journal"
)

// Handler is a slog.Handler that writes to journald. Attribute keys become
// upper-case field names ("nar_size" → NAR_SIZE), and are repeated in the
// message so that plain `journalctl` reads well too.
type Handler struct {
	level  slog.Leveler
	attrs  []slog.Attr
	groups string // prefix for keys of WithGroup
	send   func(msg string, p sdjournal.Priority, vars map[string]string) error
}

// NewHandler logs at level and above to journald.
func NewHandler(level slog.Leveler) *Handler {
	return &Handler{level: level, send: sdjournal.Send}
}

// UseJournal reports whether stderr is connected to journald (systemd sets
// JOURNAL_STREAM for services), i.e. whether to log with a Handler.
func UseJournal() bool {
	ok, err := sdjournal.StderrIsJournalStream()
	return err == nil && ok
}

func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	vars := make(map[string]string, len(h.attrs)+r.NumAttrs()+1)
	var text strings.Builder
	text.WriteString(r.Message)
	add := func(prefix string, a slog.Attr) {
		name := fieldName(prefix + a.Key)
		val := a.Value.Resolve().String()
		if name == "" {
			return
		}
		vars[name] = val
		// Also in the message, so plain `journalctl -u nixpushd` reads well.
		fmt.Fprintf(&text, " %s=%s", strings.ToLower(name), quoteIfNeeded(val))
	}
	for _, a := range h.attrs {
		add("", a) // WithAttrs prefixed them already
	}
	r.Attrs(func(a slog.Attr) bool { add(h.groups, a); return true })
	vars["SYSLOG_IDENTIFIER"] = "nixpushd"
	return h.send(text.String(), priority(r.Level), vars)
}

func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	for i := range h2.attrs[len(h.attrs):] {
		h2.attrs[len(h.attrs)+i].Key = h.groups + h2.attrs[len(h.attrs)+i].Key
	}
	return &h2
}

func (h *Handler) WithGroup(name string) slog.Handler {
	h2 := *h
	h2.groups = h.groups + name + "_"
	return &h2
}

// fieldName turns an attribute key into a valid journal field name:
// upper case letters, digits and underscores, not starting with "_" or a
// digit (fields starting with "_" are reserved for journald itself).
func fieldName(key string) string {
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

func priority(l slog.Level) sdjournal.Priority {
	switch {
	case l >= slog.LevelError:
		return sdjournal.PriErr
	case l >= slog.LevelWarn:
		return sdjournal.PriWarning
	case l >= slog.LevelInfo:
		return sdjournal.PriInfo
	}
	return sdjournal.PriDebug
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\"=") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
