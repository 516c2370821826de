package nixosmodule

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func scenario(t *testing.T, name string) report {
	t.Helper()
	r, ok := evalAll(t).Scenarios[name]
	if !ok {
		t.Fatalf("no scenario %q", name)
	}
	return r
}

// unitValue renders a serviceConfig/socketConfig value as NixOS writes it
// into the unit file: booleans as true/false, lists as repeated lines.
func unitValues(v any) []string {
	switch v := v.(type) {
	case bool:
		return []string{fmt.Sprint(v)}
	case float64:
		return []string{fmt.Sprint(int64(v))}
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, unitValues(x)...)
		}
		return out
	}
	return []string{fmt.Sprintf("%v", v)}
}

func unitValue(cfg map[string]any, key string) string {
	v, ok := cfg[key]
	if !ok {
		return "<unset>"
	}
	return strings.Join(unitValues(v), " ")
}

func TestModuleOptions(t *testing.T) {
	ev := evalAll(t)
	want := []string{
		"enable", "package", "cache.url", "cache.region", "credentialsFile", "secretKeyFile",
		"compression", "compressionLevel", "jobs", "watchStore", "postBuildHook", "skipSignedBy",
		"include", "exclude", "pushDerivations", "narListings", "indexDebugInfo", "buildLogs", "realisations", "reconcileInterval", "logLevel", "extraArgs",
		"pins", "gc.enable", "gc.keep", "gc.grace", "gc.dates", "gc.randomizedDelaySec", "gc.credentialsFile",
		"caFile", "statusGroup", "metrics.enable", "metrics.listen",
	}
	got := map[string]optionInfo{}
	for _, o := range ev.Options {
		got[strings.TrimPrefix(o.Name, "services.nixpushd.")] = o
	}
	for _, name := range want {
		o, ok := got[name]
		if !ok {
			t.Errorf("option services.nixpushd.%s is missing", name)
			continue
		}
		if o.Description == nil || strings.TrimSpace(*o.Description) == "" {
			t.Errorf("option %s has no description", o.Name)
		}
		if o.Type == "" {
			t.Errorf("option %s has no type", o.Name)
		}
		if !o.HasDefault {
			t.Errorf("option %s has no default", o.Name)
		}
	}
	if len(got) != len(want) {
		var extra []string
		for name := range got {
			if !slices.Contains(want, name) {
				extra = append(extra, name)
			}
		}
		t.Errorf("options not covered by this test: %v (add them to want, and to the option table of docs/nixos.md)", extra)
	}

	defaults := map[string]any{
		"enable":                false,
		"cache.url":             nil,
		"cache.region":          nil,
		"credentialsFile":       nil,
		"secretKeyFile":         nil,
		"compression":           "xz",
		"compressionLevel":      float64(0),
		"jobs":                  nil,
		"watchStore":            true,
		"postBuildHook":         "config.services.nixpushd.enable",
		"skipSignedBy":          []any{"cache.nixos.org-1"},
		"include":               nil,
		"exclude":               nil,
		"pushDerivations":       false,
		"narListings":           false,
		"indexDebugInfo":        false,
		"buildLogs":             false,
		"realisations":          true,
		"reconcileInterval":     "5m",
		"logLevel":              "info",
		"extraArgs":             []any{},
		"pins":                  map[string]any{},
		"gc.enable":             false,
		"gc.keep":               "30d",
		"gc.grace":              "1h",
		"gc.dates":              "daily",
		"gc.randomizedDelaySec": "0",
		"gc.credentialsFile":    nil,
		"caFile":                nil,
		"statusGroup":           nil,
		"metrics.enable":        false,
		"metrics.listen":        "127.0.0.1:9101",
	}
	for name, d := range defaults {
		if o, ok := got[name]; ok && !reflect.DeepEqual(o.Default, d) {
			t.Errorf("default of %s = %#v, want %#v", o.Name, o.Default, d)
		}
	}
	// Secrets are strings, never store paths: the type says so.
	for _, name := range []string{"credentialsFile", "secretKeyFile", "gc.credentialsFile"} {
		if ty := got[name].Type; !strings.Contains(ty, "outside the Nix store") {
			t.Errorf("type of %s is %q, want the secretPath type", name, ty)
		}
	}
}

func TestModuleDisabled(t *testing.T) {
	r := scenario(t, "disabled")
	if r.Service != nil || r.Socket != nil || r.GCService != nil || r.GCTimer != nil || len(r.Units) != 0 {
		t.Errorf("units defined although services.nixpushd.enable = false: %q", r.Units)
	}
	if _, ok := r.NixSettings["post-build-hook"]; ok {
		t.Error("post-build-hook set although services.nixpushd.enable = false")
	}
	if len(r.FailedAssertions) != 0 || len(r.Warnings) != 0 || len(r.Users) != 0 {
		t.Errorf("a disabled module must do nothing: assertions %q, warnings %q, users %v", r.FailedAssertions, r.Warnings, r.Users)
	}
}

func TestModuleDefaults(t *testing.T) {
	r := scenario(t, "defaults")
	if len(r.FailedAssertions) != 0 {
		t.Fatalf("failed assertions with the defaults: %q", r.FailedAssertions)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "secretKeyFile is not set") {
		t.Errorf("warnings = %q, want one about the missing secretKeyFile", r.Warnings)
	}
	if r.Package != fakePackage {
		t.Errorf("package = %s, want the package built from package.nix (%s)", r.Package, fakePackage)
	}
	if !slices.Contains(r.SystemPackages, fakePackage) {
		t.Errorf("environment.systemPackages = %v lacks nixpushd (for `nixpushd status`)", r.SystemPackages)
	}
	u, ok := r.Users["nixpushd"]
	if !ok || !u.IsSystemUser || u.Group != "nixpushd" || !slices.Contains(r.Groups, "nixpushd") {
		t.Errorf("users.users.nixpushd = %+v (groups %v), want a system user in group nixpushd", u, r.Groups)
	}
	args := execArgs(t, r)
	want := []string{fakePackage + "/bin/nixpushd", "daemon", "--compression=xz", "--temp-dir=/var/cache/nixpushd",
		"--log-level=info", "--watch-store=true", "--reconcile-interval=5m", "--skip-signed-by=cache.nixos.org-1",
		"--push-derivations=false"}
	if !slices.Equal(args, want) {
		t.Errorf("ExecStart with the defaults:\n got %q\nwant %q", args, want)
	}
	if v := unitValue(r.Service.ServiceConfig, "LoadCredential"); v != "" {
		t.Errorf("LoadCredential = %q without secret files", v)
	}
}

func TestModuleOverlayPackage(t *testing.T) {
	// The module's flags and the daemon must come from one checkout: the
	// default package ignores a pkgs.nixpushd of unknown version.
	r := evalAll(t).Overlay
	if r.Package != fakePackage {
		t.Errorf("with a pkgs.nixpushd present, package = %s, want the module's own %s", r.Package, fakePackage)
	}
}

func TestModuleServiceUnit(t *testing.T) {
	r := scenario(t, "full")
	if len(r.FailedAssertions) != 0 {
		t.Fatalf("failed assertions: %q", r.FailedAssertions)
	}
	s := r.Service
	sc := s.ServiceConfig
	want := map[string]string{
		"Type":                    "notify",
		"NotifyAccess":            "main",
		"WatchdogSec":             "60s",
		"Restart":                 "on-failure",
		"User":                    "nixpushd",
		"Group":                   "nixpushd",
		"StateDirectory":          "nixpushd nixpushd/spool",
		"CacheDirectory":          "nixpushd",
		"UMask":                   "0077",
		"ProtectSystem":           "strict",
		"ProtectHome":             "true",
		"PrivateTmp":              "true",
		"PrivateDevices":          "true",
		"NoNewPrivileges":         "true",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		"SystemCallFilter":        "@system-service ~@privileged",
		"SystemCallArchitectures": "native",
		"ProtectKernelTunables":   "true",
		"ProtectKernelModules":    "true",
		"ProtectControlGroups":    "true",
		"RestrictNamespaces":      "true",
		"LockPersonality":         "true",
		"MemoryDenyWriteExecute":  "true",
		"RestrictRealtime":        "true",
		"LoadCredential":          "secret-key:" + fullKey + " aws-credentials:" + fullCreds,
	}
	for k, v := range want {
		if got := unitValue(sc, k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// /run/nixpushd belongs to the socket: a RuntimeDirectory would be
	// deleted, socket and all, whenever the service stops.
	for _, k := range []string{"RuntimeDirectory", "DynamicUser", "ReadWritePaths", "PrivateUsers"} {
		if _, ok := sc[k]; ok {
			t.Errorf("%s is set (%v); see the comments in default.nix", k, sc[k])
		}
	}
	if !slices.Contains(s.Requires, "nixpushd.socket") || !slices.Contains(s.After, "nixpushd.socket") {
		t.Errorf("the service must require and come after nixpushd.socket: requires %v, after %v", s.Requires, s.After)
	}
	if !slices.Contains(s.WantedBy, "multi-user.target") {
		t.Errorf("wantedBy = %v: the service must start at boot (it watches the store)", s.WantedBy)
	}
	if !slices.Contains(s.Wants, "network-online.target") || !slices.Contains(s.After, "network-online.target") {
		t.Errorf("wants %v / after %v: want network-online.target in both", s.Wants, s.After)
	}
	// Secrets reach the daemon through the credentials directory only.
	args := strings.Join(execArgs(t, r), " ")
	for _, f := range []string{"--secret-key-file=%d/secret-key", "--credentials-file=%d/aws-credentials"} {
		if !strings.Contains(sc["ExecStart"].(string), f) {
			t.Errorf("ExecStart lacks %s: %s", f, sc["ExecStart"])
		}
	}
	for _, secret := range []string{fullKey, fullCreds} {
		if strings.Contains(args, secret) {
			t.Errorf("ExecStart names the secret file %s itself instead of its credential: %s", secret, args)
		}
	}
}

func TestModuleSocketUnit(t *testing.T) {
	r := scenario(t, "defaults")
	s := r.Socket
	if s == nil {
		t.Fatal("no systemd.sockets.nixpushd")
	}
	if !slices.Equal(s.ListenStreams, []string{"/run/nixpushd/nixpushd.sock"}) {
		t.Errorf("listenStreams = %q", s.ListenStreams)
	}
	for k, v := range map[string]string{"SocketMode": "0600", "SocketUser": "root", "SocketGroup": "root"} {
		if got := unitValue(s.SocketConfig, k); got != v {
			t.Errorf("socket %s = %q, want %q", k, got, v)
		}
	}
	if !slices.Contains(s.WantedBy, "sockets.target") {
		t.Errorf("socket wantedBy = %v, want sockets.target", s.WantedBy)
	}
}

func TestModulePostBuildHook(t *testing.T) {
	want := fakePackage + "/bin/nixpushd-hook"
	if got := scenario(t, "defaults").NixSettings["post-build-hook"]; got != want {
		t.Errorf("nix.settings.post-build-hook = %v, want %s", got, want)
	}
	if got, ok := scenario(t, "noSkip").NixSettings["post-build-hook"]; ok {
		t.Errorf("postBuildHook = false, but nix.settings.post-build-hook = %v", got)
	}
	r := scenario(t, "hookOff")
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "watchStore and postBuildHook are both off") {
		t.Errorf("warnings = %q, want one about having no event source", r.Warnings)
	}
}

func TestModuleExecStartOptions(t *testing.T) {
	args := execArgs(t, scenario(t, "noSkip"))
	if !slices.Contains(args, "--skip-signed-by=") {
		t.Errorf("skipSignedBy = [ ] must pass --skip-signed-by= (empty: push everything): %q", args)
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--include") {
			t.Errorf(`include = "" must pass no --include: %q`, args)
		}
	}
	// The region is appended to the URL, once.
	if args := execArgs(t, scenario(t, "regionSame")); !slices.Contains(args, "--to=s3://nix-cache?region=eu-west-1") {
		t.Errorf("region in both places: %q", args)
	}
	full := execArgs(t, scenario(t, "full"))
	if !slices.Contains(full, "--to="+fullURL+"&region="+fullRegion) {
		t.Errorf("cache.region not appended to the URL: %q", full)
	}
	if n := len(full); n < 2 || full[n-2] != "--max-active=7" || full[n-1] != "--shutdown-timeout=45s" {
		t.Errorf("extraArgs must come last (to override): %q", full)
	}
}

func TestModuleAssertions(t *testing.T) {
	cases := []struct {
		scenario string
		want     []string // substrings of one failed assertion
	}{
		{"keyInStore", []string{"services.nixpushd.secretKeyFile", "is in the Nix store", "LoadCredential"}},
		{"credsInStore", []string{"services.nixpushd.credentialsFile", "is in the Nix store"}},
		{"keyLiteral", []string{"services.nixpushd.secretKeyFile", "Nix path literal /etc/nixos/secret.key", "as a string"}},
		{"credsRelative", []string{"services.nixpushd.credentialsFile", "must be an absolute path"}},
		{"hookNoDaemon", []string{"postBuildHook = true needs services.nixpushd.enable = true"}},
		{"regionConflict", []string{"cache.region", "contradicts region=us-east-1"}},
		{"regionFile", []string{"cache.region only applies to an s3:// cache.url"}},
		{"levelWithXz", []string{"compressionLevel = 12 does not fit compression = \"xz\": use 1-9 with xz"}},
		{"levelWithNone", []string{"compressionLevel = 3 does not fit compression = \"none\""}},
		{"pinRelative", []string{"services.nixpushd.pins", `"system" must be absolute`}},
		{"gcNoDaemon", []string{"gc.enable = true needs services.nixpushd.enable = true"}},
		{"gcCredsInStore", []string{"services.nixpushd.gc.credentialsFile", "is in the Nix store"}},
	}
	for i, n := range badPinNames {
		cases = append(cases, struct {
			scenario string
			want     []string
		}{fmt.Sprintf("badPin%d", i), []string{"services.nixpushd.pins: bad pin name " + strconv.Quote(n) + ":", "not starting with '.'"}})
	}
	for i, u := range badURLs {
		cases = append(cases, struct {
			scenario string
			want     []string
		}{fmt.Sprintf("badURL%d", i), []string{"services.nixpushd.cache.url = \"" + u + "\":"}})
	}
	for _, c := range cases {
		t.Run(c.scenario, func(t *testing.T) {
			r := scenario(t, c.scenario)
			if len(r.FailedAssertions) != 1 {
				t.Fatalf("want exactly one failed assertion, got %d: %q", len(r.FailedAssertions), r.FailedAssertions)
			}
			for _, w := range c.want {
				if !strings.Contains(r.FailedAssertions[0], w) {
					t.Errorf("assertion message lacks %q:\n%s", w, r.FailedAssertions[0])
				}
			}
		})
	}
	for i, u := range goodURLs {
		if r := scenario(t, fmt.Sprintf("goodURL%d", i)); len(r.FailedAssertions) != 0 {
			t.Errorf("cache.url = %q rejected: %q", u, r.FailedAssertions)
		}
	}
	for i, n := range goodPinNames {
		if r := scenario(t, fmt.Sprintf("goodPin%d", i)); len(r.FailedAssertions) != 0 {
			t.Errorf("pin name %q rejected: %q", n, r.FailedAssertions)
		}
	}
	if r := scenario(t, "regionSame"); len(r.FailedAssertions) != 0 {
		t.Errorf("the same region in the URL and cache.region rejected: %q", r.FailedAssertions)
	}
}

func TestPackageExpression(t *testing.T) {
	ev := evalAll(t)
	p := ev.Package
	if p.Pname != "nixpushd" || p.Version == "" {
		t.Errorf("pname %q version %q", p.Pname, p.Version)
	}
	if !slices.Equal(p.SubPackages, []string{"cmd/nixpushd"}) {
		t.Errorf("subPackages = %q", p.SubPackages)
	}
	if !strings.Contains(p.PostInstall, "ln -s nixpushd $out/bin/nixpushd-hook") {
		t.Errorf("postInstall lacks the nixpushd-hook alias: %q", p.PostInstall)
	}
	for _, pkg := range []string{"./nar/", "./upload/", "./queue/", "./store/", "./daemon/", "./hook/", "./journal/", "./lifecycle/"} {
		if !strings.Contains(p.CheckPhase, pkg) {
			t.Errorf("checkPhase does not test %s: %q", pkg, p.CheckPhase)
		}
	}
	if !strings.Contains(p.CheckPhase, "go test -short") || !strings.Contains(p.CheckPhase, "runHook preCheck") {
		t.Errorf("checkPhase = %q, want go test -short between the check hooks", p.CheckPhase)
	}
	if !slices.Contains(p.Ldflags, "-X main.version="+p.Version) {
		t.Errorf("ldflags %q do not set main.version", p.Ldflags)
	}
	// The variable the ldflag sets must exist under that name.
	if !slices.ContainsFunc(p.Ldflags, func(f string) bool {
		return strings.HasPrefix(f, "-X github.com/nixpushd/nixpushd/compression.liblzmaPath=") && strings.HasSuffix(f, "/lib/liblzma.so.5")
	}) {
		t.Errorf("ldflags %q do not point the xz encoder at nixpkgs' liblzma", p.Ldflags)
	}
	if p.Meta.License != "MIT" || p.Meta.MainProgram != "nixpushd" || p.Meta.Description == "" {
		t.Errorf("meta = %+v", p.Meta)
	}
	if !slices.Contains(p.Meta.Platforms, "x86_64-linux") || slices.Contains(p.Meta.Platforms, "x86_64-darwin") {
		t.Errorf("meta.platforms = %v, want Linux only", p.Meta.Platforms)
	}
	if !strings.HasPrefix(p.VendorHash, "sha256-") {
		t.Errorf("vendorHash = %q, want an SRI sha256 hash", p.VendorHash)
	}

	// The builder follows go.mod's go line (1.26 today).
	builders := map[string]string{"go125": "buildGo126Module", "go126": "buildGoModule", "go127": "buildGoModule", "go125NoFallback": ""}
	for k, want := range builders {
		got := ""
		if b := ev.Builders[k]; b != nil {
			got = *b
		}
		if got != want {
			t.Errorf("builder for %s = %q, want %q (empty: a helpful throw)", k, got, want)
		}
	}
}

func TestPackageSource(t *testing.T) {
	ev := evalAll(t)
	if ev.Package.SrcName != "nixpushd-source" {
		t.Errorf("src name = %q", ev.Package.SrcName)
	}
	for path, c := range sourcePaths {
		got, ok := ev.SourceKeeps[path]
		if !ok {
			t.Errorf("no decision for %s", path)
		} else if got != c.keep {
			t.Errorf("source filter keeps %s (%s): %v, want %v", path, c.typ, got, c.keep)
		}
	}
}

func TestFlake(t *testing.T) {
	f := evalAll(t).Flake
	if !slices.Equal(f.Inputs, []string{"nixpkgs"}) {
		t.Errorf("flake inputs = %v", f.Inputs)
	}
	for _, sys := range []string{"x86_64-linux", "aarch64-linux"} {
		if f.Packages[sys]["default"] != "nixpushd" {
			t.Errorf("packages.%s.default = %q", sys, f.Packages[sys]["default"])
		}
	}
	if f.OverlayPackage != "nixpushd" {
		t.Errorf("overlays.default gives nixpushd = %q", f.OverlayPackage)
	}
	if !slices.Contains(f.NixosModules, "default") {
		t.Errorf("nixosModules = %v", f.NixosModules)
	}
	if f.ModuleExecStartPrefix != fakePackage+"/bin/nixpushd" {
		t.Errorf("nixosModules.default ExecStart starts with %q", f.ModuleExecStartPrefix)
	}
}

// serviceArgs splits a service's ExecStart, keeping %d as it is.
func serviceArgs(t *testing.T, s *service) []string {
	t.Helper()
	line, _ := s.ServiceConfig["ExecStart"].(string)
	args, err := splitExec(line, map[byte]string{'d': "%d"})
	if err != nil {
		t.Fatalf("ExecStart is not a valid systemd command line: %v\n%s", err, line)
	}
	return args
}

func TestModulePins(t *testing.T) {
	r := scenario(t, "pins")
	if len(r.FailedAssertions) != 0 {
		t.Fatalf("failed assertions: %q", r.FailedAssertions)
	}
	// One --pin per pin, in name order, before the credentials.
	var pins []string
	for _, a := range execArgs(t, r) {
		if strings.HasPrefix(a, "--pin") {
			pins = append(pins, a)
		}
	}
	want := []string{"--pin=a.b_c-1=" + pinTricky, "--pin=system=/run/current-system"}
	if !slices.Equal(pins, want) {
		t.Errorf("pin flags %q, want %q", pins, want)
	}
	for _, name := range []string{"defaults", "full"} {
		if args := execArgs(t, scenario(t, name)); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--pin") }) {
			t.Errorf("%s: --pin without pins: %q", name, args)
		}
	}
}

// Keys of nixpushd.service that nixpushd-gc.service does not share; every
// other key (user, umask, all the hardening) must be the same in both.
var daemonOnlyKeys = []string{"Type", "NotifyAccess", "ExecStart", "Restart", "RestartSec", "WatchdogSec",
	"TimeoutStopSec", "StateDirectory", "CacheDirectory", "CacheDirectoryMode", "LoadCredential"}

func TestModuleGC(t *testing.T) {
	r := scenario(t, "gc")
	if len(r.FailedAssertions) != 0 {
		t.Fatalf("failed assertions: %q", r.FailedAssertions)
	}
	if r.GCService == nil || r.GCTimer == nil {
		t.Fatalf("gc.enable = true, but service %v, timer %v", r.GCService, r.GCTimer)
	}
	want := []string{fakePackage + "/bin/nixpushd", "gc", "--to=" + fullURL + "&region=" + fullRegion,
		"--keep=14d", "--grace=90m", "--state-dir=/var/lib/nixpushd", "--log-level=debug",
		"--credentials-file=%d/aws-credentials"}
	if args := serviceArgs(t, r.GCService); !slices.Equal(args, want) {
		t.Errorf("nixpushd-gc ExecStart:\n got %q\nwant %q", args, want)
	}
	sc := r.GCService.ServiceConfig
	for k, v := range map[string]string{
		"Type":           "oneshot",
		"User":           "nixpushd",
		"Group":          "nixpushd",
		"StateDirectory": "nixpushd",
		"UMask":          "0077",
		// gc does not sign: no signing key.
		"LoadCredential": "aws-credentials:" + fullCreds,
	} {
		if got := unitValue(sc, k); got != v {
			t.Errorf("nixpushd-gc %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"Restart", "WatchdogSec", "NotifyAccess", "CacheDirectory", "RuntimeDirectory"} {
		if _, ok := sc[k]; ok {
			t.Errorf("nixpushd-gc sets %s = %v", k, sc[k])
		}
	}
	if len(r.GCService.WantedBy) != 0 {
		t.Errorf("nixpushd-gc wantedBy = %q: only the timer starts it", r.GCService.WantedBy)
	}
	if !slices.Contains(r.GCService.After, "network-online.target") || !slices.Contains(r.GCService.Wants, "network-online.target") {
		t.Errorf("nixpushd-gc wants %q / after %q: want network-online.target in both", r.GCService.Wants, r.GCService.After)
	}

	tc := r.GCTimer.TimerConfig
	for k, v := range map[string]string{"OnCalendar": "Sun 03:00", "Persistent": "true", "RandomizedDelaySec": "45min"} {
		if got := unitValue(tc, k); got != v {
			t.Errorf("nixpushd-gc.timer %s = %q, want %q", k, got, v)
		}
	}
	if !slices.Equal(r.GCTimer.WantedBy, []string{"timers.target"}) {
		t.Errorf("nixpushd-gc.timer wantedBy = %q", r.GCTimer.WantedBy)
	}
}

func TestModuleGCHardening(t *testing.T) {
	for _, name := range []string{"gc", "gcDefaults", "gcOwnCreds"} {
		r := scenario(t, name)
		d, g := r.Service.ServiceConfig, r.GCService.ServiceConfig
		for _, k := range []string{"ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "CapabilityBoundingSet",
			"SystemCallFilter", "RestrictAddressFamilies", "MemoryDenyWriteExecute", "RestrictNamespaces", "ProtectProc"} {
			if _, ok := g[k]; !ok {
				t.Errorf("%s: nixpushd-gc lacks %s", name, k)
			}
		}
		for k, v := range d {
			if slices.Contains(daemonOnlyKeys, k) {
				continue
			}
			if !reflect.DeepEqual(g[k], v) {
				t.Errorf("%s: %s = %v in nixpushd, %v in nixpushd-gc", name, k, v, g[k])
			}
		}
		for k := range g {
			if _, ok := d[k]; !ok && !slices.Contains(daemonOnlyKeys, k) {
				t.Errorf("%s: nixpushd-gc sets %s, nixpushd does not", name, k)
			}
		}
	}
}

func TestModuleGCDefaults(t *testing.T) {
	r := scenario(t, "gcDefaults")
	if len(r.FailedAssertions) != 0 {
		t.Fatalf("failed assertions: %q", r.FailedAssertions)
	}
	// The daemon's default cache, spelt out (see TestGCTargetMatchesDaemon).
	want := []string{fakePackage + "/bin/nixpushd", "gc", "--to=file:///var/lib/nixpushd/cache",
		"--keep=30d", "--grace=1h", "--state-dir=/var/lib/nixpushd", "--log-level=info"}
	if args := serviceArgs(t, r.GCService); !slices.Equal(args, want) {
		t.Errorf("nixpushd-gc ExecStart with the defaults:\n got %q\nwant %q", args, want)
	}
	if v := unitValue(r.GCService.ServiceConfig, "LoadCredential"); v != "" {
		t.Errorf("LoadCredential = %q without credentials files", v)
	}
	for k, v := range map[string]string{"OnCalendar": "daily", "Persistent": "true", "RandomizedDelaySec": "0"} {
		if got := unitValue(r.GCTimer.TimerConfig, k); got != v {
			t.Errorf("nixpushd-gc.timer %s = %q, want %q", k, got, v)
		}
	}
}

// gc.credentialsFile replaces credentialsFile for gc only.
func TestModuleGCCredentials(t *testing.T) {
	r := scenario(t, "gcOwnCreds")
	if len(r.FailedAssertions) != 0 {
		t.Fatalf("failed assertions: %q", r.FailedAssertions)
	}
	if got := unitValue(r.GCService.ServiceConfig, "LoadCredential"); got != "aws-credentials:"+gcCreds {
		t.Errorf("nixpushd-gc LoadCredential = %q, want gc.credentialsFile", got)
	}
	if got := unitValue(r.Service.ServiceConfig, "LoadCredential"); got != "secret-key:/run/keys/k aws-credentials:"+fullCreds {
		t.Errorf("nixpushd LoadCredential = %q, want its own credentialsFile", got)
	}
	args := serviceArgs(t, r.GCService)
	if !slices.Contains(args, "--credentials-file=%d/aws-credentials") {
		t.Errorf("nixpushd-gc ExecStart lacks the credential: %q", args)
	}
	if strings.Contains(strings.Join(args, " "), gcCreds) {
		t.Errorf("nixpushd-gc ExecStart names the secret file itself: %q", args)
	}
}

func TestModuleGCDisabled(t *testing.T) {
	for _, name := range []string{"defaults", "full", "pins", "gcOff"} {
		r := scenario(t, name)
		if r.GCService != nil || r.GCTimer != nil {
			t.Errorf("%s: gc units without gc.enable", name)
		}
		if want := []string{"nixpushd"}; !slices.Equal(r.Units, want) {
			t.Errorf("%s: units %q, want %q", name, r.Units, want)
		}
	}
	if r := scenario(t, "gcOff"); len(r.FailedAssertions) != 0 {
		t.Errorf("gc.credentialsFile with gc off: %q", r.FailedAssertions)
	}
}

// Every %d/NAME a service's ExecStart reads is a LoadCredential=NAME:…,
// and every credential loaded is used.
func TestModuleCredentialNames(t *testing.T) {
	for name, r := range evalAll(t).Scenarios {
		if len(r.FailedAssertions) != 0 {
			continue
		}
		for _, s := range []*service{r.Service, r.GCService} {
			if s == nil {
				continue
			}
			var used, loaded []string
			for _, a := range serviceArgs(t, s) {
				if _, rest, ok := strings.Cut(a, "%d/"); ok {
					used = append(used, rest)
				}
			}
			for _, v := range unitValues(s.ServiceConfig["LoadCredential"]) {
				n, _, _ := strings.Cut(v, ":")
				loaded = append(loaded, n)
			}
			if !slices.Equal(sorted(used), sorted(loaded)) {
				t.Errorf("%s: %s reads credentials %q but loads %q", name, s.Description, used, loaded)
			}
		}
	}
}

// gc.keep and gc.grace: days or Go durations, checked by the option type.
func TestModuleGCDurations(t *testing.T) {
	lib := nixpkgsLib(t)
	inst := nixTool(t, "nix-instantiate")
	eval := func(keep string) (string, error) {
		expr := fmt.Sprintf(`let h = import ./nixos-module/test/eval.nix { libPath = %s; }; in
			(h.report { services.nixpushd = { enable = true; gc = { enable = true; keep = %s; grace = %[2]s; }; }; }).gcService.serviceConfig.ExecStart`,
			nixString(lib), nixString(keep))
		var out string
		err := evalJSON(t, inst, expr, &out)
		return out, err
	}
	for _, d := range []string{"30d", "1d", "12h", "1h30m", "90s", "0.5h"} {
		if out, err := eval(d); err != nil {
			t.Errorf("gc.keep = %q rejected: %v", d, err)
		} else if !strings.Contains(out, `"--keep=`+d+`"`) || !strings.Contains(out, `"--grace=`+d+`"`) {
			t.Errorf("gc.keep = grace = %q: ExecStart %s", d, out)
		}
	}
	for _, d := range []string{"30 days", "1w", "-1h", "30D", "", "1d12h"} {
		_, err := eval(d)
		if err == nil || !strings.Contains(err.Error(), "services.nixpushd.gc.") || !strings.Contains(err.Error(), "is not of type") {
			t.Errorf("gc.keep = %q: want a type error, got %v", d, err)
		}
	}
}
