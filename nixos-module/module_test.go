package nixosmodule

import (
	"fmt"
	"reflect"
	"slices"
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
		"include", "exclude", "pushDerivations", "reconcileInterval", "logLevel", "extraArgs",
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
		t.Errorf("options not covered by this test: %v (add them to want, and to the README)", extra)
	}

	defaults := map[string]any{
		"enable":            false,
		"cache.url":         nil,
		"cache.region":      nil,
		"credentialsFile":   nil,
		"secretKeyFile":     nil,
		"compression":       "xz",
		"compressionLevel":  float64(0),
		"jobs":              nil,
		"watchStore":        true,
		"postBuildHook":     "config.services.nixpushd.enable",
		"skipSignedBy":      []any{"cache.nixos.org-1"},
		"include":           nil,
		"exclude":           nil,
		"pushDerivations":   false,
		"reconcileInterval": "5m",
		"logLevel":          "info",
		"extraArgs":         []any{},
	}
	for name, d := range defaults {
		if o, ok := got[name]; ok && !reflect.DeepEqual(o.Default, d) {
			t.Errorf("default of %s = %#v, want %#v", o.Name, o.Default, d)
		}
	}
	// Secrets are strings, never store paths: the type says so.
	for _, name := range []string{"credentialsFile", "secretKeyFile"} {
		if ty := got[name].Type; !strings.Contains(ty, "outside the Nix store") {
			t.Errorf("type of %s is %q, want the secretPath type", name, ty)
		}
	}
}

func TestModuleDisabled(t *testing.T) {
	r := scenario(t, "disabled")
	if r.Service != nil || r.Socket != nil {
		t.Error("units defined although services.nixpushd.enable = false")
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
	for _, pkg := range []string{"./nar/", "./upload/", "./queue/", "./store/", "./daemon/"} {
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
		return strings.HasPrefix(f, "-X github.com/nixpushd/nixpushd/upload.liblzmaPath=") && strings.HasSuffix(f, "/lib/liblzma.so.5")
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
