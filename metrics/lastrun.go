package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/nixpushd/nixpushd/internal/fsutil"
	"github.com/nixpushd/nixpushd/lifecycle"
)

// RunResult is the outcome of one run of a maintenance command (gc,
// verify). They run from timers, not in the daemon: each leaves its last
// result in the state directory, and the daemon's metrics read it at
// scrape time.
type RunResult struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Success bool      `json:"success"`
	Error   string    `json:"error,omitempty"`
	// LastSuccess is when the command last succeeded, this run or an
	// earlier one (WriteLastRun carries it over from the previous file).
	LastSuccess time.Time `json:"last_success,omitzero"`

	// gc
	DeletedObjects int   `json:"deleted_objects,omitempty"`
	FreedBytes     int64 `json:"freed_bytes,omitempty"`
	// verify
	NarInfos int `json:"narinfos,omitempty"`
	Problems int `json:"problems,omitempty"`
}

// commandName keeps the file name inside the state directory.
var commandName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// LastRunPath is where command's last result is kept.
func LastRunPath(stateDir, command string) string {
	return filepath.Join(stateDir, "last-"+command+".json")
}

// WriteLastRun records r as command's last result in stateDir, atomically
// (a scrape sees the old file or the new one). A failed run keeps the
// previous run's LastSuccess.
func WriteLastRun(stateDir, command string, r RunResult) error {
	if !commandName.MatchString(command) {
		return fmt.Errorf("last run: bad command name %q", command)
	}
	r.Start, r.End = r.Start.UTC(), r.End.UTC()
	if r.Success {
		r.LastSuccess = r.End
	} else if prev, ok, err := ReadLastRun(stateDir, command); err == nil && ok {
		r.LastSuccess = prev.LastSuccess
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	path := LastRunPath(stateDir, command)
	// 0644: readable by the daemon even if gc ran as another user (root).
	if err := fsutil.WriteFileAtomic(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("record last %s run in %s: %w", command, path, err)
	}
	return nil
}

// ReadLastRun returns command's last result, and false if it never ran
// (no file).
func ReadLastRun(stateDir, command string) (RunResult, bool, error) {
	var r RunResult
	path := LastRunPath(stateDir, command)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("read last %s run: %w", command, err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, false, fmt.Errorf("read last %s run: %s: %w (delete it; the next run writes it again)", command, path, err)
	}
	return r, true, nil
}

// GCRun makes the RunResult of a gc that started at start and returned
// res, err (res may be nil, or partial when err is set).
func GCRun(start, end time.Time, res *lifecycle.GCResult, err error) RunResult {
	r := RunResult{Start: start, End: end, Success: err == nil}
	if err != nil {
		r.Error = err.Error()
	}
	if res != nil {
		r.DeletedObjects = res.DeletedNarInfos + res.DeletedNARs + res.DeletedOther
		r.FreedBytes = res.BytesFreed
	}
	return r
}

// VerifyRun makes the RunResult of a verify that started at start and
// returned res, err. Problems found are not a failure: success means the
// verification ran to the end.
func VerifyRun(start, end time.Time, res *lifecycle.VerifyResult, err error) RunResult {
	r := RunResult{Start: start, End: end, Success: err == nil}
	if err != nil {
		r.Error = err.Error()
	}
	if res != nil {
		r.NarInfos = res.NarInfos
		r.Problems = res.Problems
	}
	return r
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
