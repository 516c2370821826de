package nixosmodule

import (
	"slices"
	"strings"
	"testing"
)

// caFile reaches the daemon and gc as a plain path (a CA is not secret),
// statusGroup opens the socket to that group, metrics bind to localhost.
func TestModuleOperatorOptions(t *testing.T) {
	r := scenario(t, "operator")
	if len(r.FailedAssertions) != 0 {
		t.Fatalf("failed assertions: %q", r.FailedAssertions)
	}
	const ca = "--ca-file=/etc/ssl/certs/ca-certificates.crt"
	args := execArgs(t, r)
	for _, want := range []string{ca, "--status-group=adm", "--metrics-listen=127.0.0.1:9101"} {
		if !slices.Contains(args, want) {
			t.Errorf("daemon ExecStart lacks %s: %q", want, args)
		}
	}
	if r.GCService == nil {
		t.Fatal("gc.enable = true made no nixpushd-gc service")
	}
	if gc := serviceArgs(t, r.GCService); !slices.Contains(gc, ca) {
		t.Errorf("nixpushd-gc ExecStart lacks %s: %q", ca, gc)
	}
	if got := unitValue(r.Service.ServiceConfig, "LoadCredential"); strings.Contains(got, "ca-certificates") {
		t.Errorf("the CA went through LoadCredential (%q); it is a plain path", got)
	}
	for k, v := range map[string]string{"SocketMode": "0660", "SocketGroup": "adm", "SocketUser": "root"} {
		if got := unitValue(r.Socket.SocketConfig, k); got != v {
			t.Errorf("socket %s = %q with statusGroup = \"adm\", want %q", k, got, v)
		}
	}
	// The default cache in the state directory is readable by local users.
	if got := unitValue(r.Service.ServiceConfig, "StateDirectoryMode"); got != "0755" {
		t.Errorf("StateDirectoryMode = %q, want 0755", got)
	}
	if got := unitValue(r.GCService.ServiceConfig, "StateDirectoryMode"); got != "0755" {
		t.Errorf("nixpushd-gc StateDirectoryMode = %q, want 0755 (or gc would narrow the daemon's)", got)
	}
}

func TestModuleMetricsPortAssertion(t *testing.T) {
	r := scenario(t, "metricsLowPort")
	if len(r.FailedAssertions) != 1 || !strings.Contains(r.FailedAssertions[0], "metrics.listen") {
		t.Fatalf("metrics on port 80: failed assertions %q, want one naming metrics.listen", r.FailedAssertions)
	}
	if args := execArgs(t, scenario(t, "defaults")); slices.ContainsFunc(args, func(a string) bool {
		return strings.HasPrefix(a, "--metrics-listen") || strings.HasPrefix(a, "--status-group") || strings.HasPrefix(a, "--ca-file")
	}) {
		t.Errorf("defaults must pass no --metrics-listen, --status-group or --ca-file: %q", args)
	}
}
