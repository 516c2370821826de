package nixosmodule

import (
	"fmt"
	"sort"
	"strings"
)

// What nixos-module/test/eval.nix reports for one configuration.
type report struct {
	FailedAssertions []string            `json:"failedAssertions"`
	Warnings         []string            `json:"warnings"`
	Service          *service            `json:"service"`
	Socket           *socket             `json:"socket"`
	GCService        *service            `json:"gcService"`
	GCTimer          *timer              `json:"gcTimer"`
	Units            []string            `json:"units"`
	NixSettings      map[string]any      `json:"nixSettings"`
	Users            map[string]userInfo `json:"users"`
	Groups           []string            `json:"groups"`
	SystemPackages   []string            `json:"systemPackages"`
	Package          string              `json:"package"`
}

type service struct {
	Description   string            `json:"description"`
	Documentation []string          `json:"documentation"`
	WantedBy      []string          `json:"wantedBy"`
	Requires      []string          `json:"requires"`
	Wants         []string          `json:"wants"`
	After         []string          `json:"after"`
	Before        []string          `json:"before"`
	Path          []string          `json:"path"`
	Environment   map[string]string `json:"environment"`
	UnitConfig    map[string]any    `json:"unitConfig"`
	ServiceConfig map[string]any    `json:"serviceConfig"`
}

type socket struct {
	Description   string         `json:"description"`
	WantedBy      []string       `json:"wantedBy"`
	Requires      []string       `json:"requires"`
	After         []string       `json:"after"`
	ListenStreams []string       `json:"listenStreams"`
	UnitConfig    map[string]any `json:"unitConfig"`
	SocketConfig  map[string]any `json:"socketConfig"`
}

type timer struct {
	Description string         `json:"description"`
	WantedBy    []string       `json:"wantedBy"`
	UnitConfig  map[string]any `json:"unitConfig"`
	TimerConfig map[string]any `json:"timerConfig"`
}

type userInfo struct {
	IsSystemUser bool   `json:"isSystemUser"`
	Group        string `json:"group"`
	Description  string `json:"description"`
}

type optionInfo struct {
	Name        string  `json:"name"`
	Type        string  `json:"type"`
	Description *string `json:"description"`
	HasDefault  bool    `json:"hasDefault"`
	Default     any     `json:"default"`
}

type packageInfo struct {
	Pname             string   `json:"pname"`
	Version           string   `json:"version"`
	SubPackages       []string `json:"subPackages"`
	VendorHash        string   `json:"vendorHash"`
	Ldflags           []string `json:"ldflags"`
	PostInstall       string   `json:"postInstall"`
	CheckPhase        string   `json:"checkPhase"`
	BuiltWith         string   `json:"builtWith"`
	SrcName           string   `json:"srcName"`
	NativeCheckInputs []string `json:"nativeCheckInputs"`
	Meta              struct {
		Description string   `json:"description"`
		MainProgram string   `json:"mainProgram"`
		License     string   `json:"license"`
		Platforms   []string `json:"platforms"`
	} `json:"meta"`
}

type flakeInfo struct {
	Description           string                       `json:"description"`
	Inputs                []string                     `json:"inputs"`
	Packages              map[string]map[string]string `json:"packages"`
	DefaultIsPackage      string                       `json:"defaultIsPackage"`
	OverlayPackage        string                       `json:"overlayPackage"`
	NixosModules          []string                     `json:"nixosModules"`
	ModuleExecStartPrefix string                       `json:"moduleExecStartPrefix"`
}

type evaluation struct {
	Scenarios   map[string]report  `json:"scenarios"`
	Overlay     report             `json:"overlay"`
	Options     []optionInfo       `json:"options"`
	Package     packageInfo        `json:"package"`
	Builders    map[string]*string `json:"builders"`
	SourceKeeps map[string]bool    `json:"sourceKeeps"`
	Flake       flakeInfo          `json:"flake"`
}

// fakePackage is where eval.nix's stub buildGoModule "installs" nixpushd.
const fakePackage = "/nix/store/00000000000000000000000000000000-nixpushd-0.1.0"

// Values of the "full" scenario, checked after the round trip through
// systemd's command line parsing and `nixpushd daemon --check-config`.
// The regexes carry everything that quoting can get wrong: spaces, both
// quotes, backslashes, %, $, ${…}, a semicolon, a tab and non-ASCII.
const (
	fullURL     = "s3://nix-cache?endpoint=s3.homelab.local:9000&scheme=http"
	fullRegion  = "eu-west-1"
	fullInclude = `^(hello|my app)-[0-9]+\.[0-9]+(-"q"|'s')?$`
	fullExclude = "100% \\d{2} ${HOME} $HOME ; \\\\ \t µ-end$"
	fullCreds   = "/run/keys/nixpushd-aws"
	fullKey     = "/run/keys/nixpushd-signing"
)

var fullSkip = []string{"cache.nixos.org-1", "nix-community.cachix.org-1"}

// A pin path with what quoting can get wrong (the daemon only requires it
// to be absolute).
const pinTricky = "/srv/my pins/100% ${HOME} $x \\d \"q\" 'µ'"

// Pin names the module and the daemon must both reject
// (see TestPinNamesMatchDaemon), and ones both must accept.
var (
	badPinNames  = []string{".hidden", "has space", "a/b", "", strings.Repeat("p", 101), "ü", "a,b", "a:b"}
	goodPinNames = []string{"system", "A-Z_0.9", "-dash", "_x", "host.example.org", strings.Repeat("p", 100)}
)

// The gc credentials of the "gcOwnCreds" scenario.
const gcCreds = "/run/keys/nixpushd-gc"

// Configurations whose cache.url must be rejected at evaluation time, and
// by the daemon too (see TestURLValidationMatchesDaemon).
var badURLs = []string{
	"http://s3.homelab.local/nix-cache",
	"s3://Nix_Cache",
	"s3://nix-cache/sub/dir",
	"s3://nix-cache?endpont=s3.homelab.local",
	"s3://nix-cache?endpoint=s3.homelab.local&compression=zstd",
	"s3://nix-cache?scheme=ftp",
	"s3://nix-cache?endpoint=s3.homelab.local/path",
	"s3://ab",
	"s3://nix..cache",
	"s3://192.168.1.10",
	"file://relative/dir",
}

// And URLs both must accept.
var goodURLs = []string{
	"s3://nix-cache",
	"s3://nix-cache?endpoint=s3.homelab.local&profile=nixbuilder",
	"s3://nix.cache-1?endpoint=http://minio.lan:9000&region=us-east-1",
	"s3://nix-cache?endpoint=minio.lan:9000&scheme=http",
	"file:///srv/nix-cache",
}

// scenarios are the configurations evaluated, by name: NixOS module
// bodies (Nix source).
func scenarios() map[string]string {
	s := map[string]string{
		"disabled": `{ }`,
		"defaults": `{ services.nixpushd.enable = true; }`,
		"full": fmt.Sprintf(`{
			services.nixpushd = {
				enable = true;
				cache.url = %s;
				cache.region = %s;
				credentialsFile = %s;
				secretKeyFile = %s;
				compression = "zstd";
				compressionLevel = 19;
				jobs = 3;
				watchStore = false;
				skipSignedBy = [ %s ];
				include = %s;
				exclude = %s;
				pushDerivations = true;
				narListings = true;
				indexDebugInfo = true;
				buildLogs = true;
				realisations = false;
				reconcileInterval = "10m";
				logLevel = "debug";
				extraArgs = [ "--max-active=7" "--shutdown-timeout=45s" ];
			};
		}`, nixString(fullURL), nixString(fullRegion), nixString(fullCreds), nixString(fullKey),
			nixList(fullSkip), nixString(fullInclude), nixString(fullExclude)),
		// What the example units in this directory are: see TestExampleUnitsMatchModule.
		"example": `{
			services.nixpushd = {
				enable = true;
				cache.url = "s3://nix-cache?endpoint=s3.example.org";
				credentialsFile = "/etc/nixpushd/aws-credentials";
				secretKeyFile = "/etc/nixpushd/secret-key";
			};
		}`,
		"noSkip":  `{ services.nixpushd = { enable = true; skipSignedBy = [ ]; include = ""; postBuildHook = false; }; }`,
		"hookOff": `{ services.nixpushd = { enable = true; postBuildHook = false; watchStore = false; secretKeyFile = "/run/keys/k"; }; }`,

		"keyInStore":     `{ services.nixpushd = { enable = true; secretKeyFile = "${builtins.storeDir}/2c9r1x5xa4xawl3ikcjbyf3n8i6ra2sb-secret.key"; }; }`,
		"credsInStore":   `{ services.nixpushd = { enable = true; secretKeyFile = "/run/keys/k"; credentialsFile = "/nix/store/2c9r1x5xa4xawl3ikcjbyf3n8i6ra2sb-aws"; }; }`,
		"keyLiteral":     `{ services.nixpushd = { enable = true; secretKeyFile = /etc/nixos/secret.key; }; }`,
		"credsRelative":  `{ services.nixpushd = { enable = true; secretKeyFile = "/run/keys/k"; credentialsFile = "keys/aws"; }; }`,
		"hookNoDaemon":   `{ services.nixpushd.postBuildHook = true; }`,
		"regionConflict": `{ services.nixpushd = { enable = true; cache.url = "s3://nix-cache?region=us-east-1"; cache.region = "eu-west-1"; }; }`,
		"regionSame":     `{ services.nixpushd = { enable = true; cache.url = "s3://nix-cache?region=eu-west-1"; cache.region = "eu-west-1"; secretKeyFile = "/run/keys/k"; }; }`,
		"regionFile":     `{ services.nixpushd = { enable = true; cache.url = "file:///srv/cache"; cache.region = "eu-west-1"; }; }`,
		"levelWithXz":    `{ services.nixpushd = { enable = true; compressionLevel = 12; }; }`,
		"levelWithNone":  `{ services.nixpushd = { enable = true; compression = "none"; compressionLevel = 3; }; }`,

		"pins": fmt.Sprintf(`{ services.nixpushd = { enable = true; secretKeyFile = "/run/keys/k";
			pins = { system = "/run/current-system"; "a.b_c-1" = %s; }; }; }`, nixString(pinTricky)),
		"pinRelative": `{ services.nixpushd = { enable = true; secretKeyFile = "/run/keys/k"; pins.system = "run/current-system"; }; }`,

		"gc": fmt.Sprintf(`{
			services.nixpushd = {
				enable = true;
				cache.url = %s;
				cache.region = %s;
				credentialsFile = %s;
				secretKeyFile = %s;
				logLevel = "debug";
				pins.system = "/run/current-system";
				gc = { enable = true; keep = "14d"; grace = "90m"; dates = "Sun 03:00"; randomizedDelaySec = "45min"; };
			};
		}`, nixString(fullURL), nixString(fullRegion), nixString(fullCreds), nixString(fullKey)),
		"gcDefaults": `{ services.nixpushd = { enable = true; secretKeyFile = "/run/keys/k"; gc.enable = true; }; }`,
		"gcOwnCreds": fmt.Sprintf(`{ services.nixpushd = { enable = true; secretKeyFile = "/run/keys/k";
			cache.url = "s3://nix-cache"; credentialsFile = %s; gc = { enable = true; credentialsFile = %s; }; }; }`,
			nixString(fullCreds), nixString(gcCreds)),
		// gc.credentialsFile alone does nothing while gc is off.
		"gcOff":      fmt.Sprintf(`{ services.nixpushd = { enable = true; gc.credentialsFile = %s; }; }`, nixString(gcCreds)),
		"gcNoDaemon": `{ services.nixpushd.gc.enable = true; }`,
		// The operator's options: a private CA, a status group, metrics.
		"operator": `{ services.nixpushd = { enable = true; secretKeyFile = "/run/keys/k";
			cache.url = "s3://nix-cache?endpoint=s3.homelab.local"; credentialsFile = "/run/keys/aws";
			caFile = "/etc/ssl/certs/ca-certificates.crt"; statusGroup = "adm";
			metrics.enable = true; gc.enable = true; }; }`,
		"metricsLowPort": `{ services.nixpushd = { enable = true; metrics = { enable = true; listen = "0.0.0.0:80"; }; }; }`,
		"gcCredsInStore": `{ services.nixpushd = { enable = true; secretKeyFile = "/run/keys/k"; gc = { enable = true; credentialsFile = "/nix/store/2c9r1x5xa4xawl3ikcjbyf3n8i6ra2sb-gc-aws"; }; }; }`,
	}
	for i, n := range badPinNames {
		s[fmt.Sprintf("badPin%d", i)] = fmt.Sprintf(`{ services.nixpushd = { enable = true; secretKeyFile = "/run/keys/k"; pins = { ok = "/x"; %s = "/y"; }; }; }`, nixString(n))
	}
	for i, n := range goodPinNames {
		s[fmt.Sprintf("goodPin%d", i)] = fmt.Sprintf(`{ services.nixpushd = { enable = true; secretKeyFile = "/run/keys/k"; pins = { %s = "/y"; }; }; }`, nixString(n))
	}
	for i, u := range badURLs {
		s[fmt.Sprintf("badURL%d", i)] = fmt.Sprintf(`{ services.nixpushd = { enable = true; cache.url = %s; }; }`, nixString(u))
	}
	for i, u := range goodURLs {
		s[fmt.Sprintf("goodURL%d", i)] = fmt.Sprintf(`{ services.nixpushd = { enable = true; cache.url = %s; secretKeyFile = "/run/keys/k"; }; }`, nixString(u))
	}
	return s
}

// Paths for source.nix's filter, with their types, and whether the
// package source must keep them.
var sourcePaths = map[string]struct {
	typ  string
	keep bool
}{
	"go.mod":                         {"regular", true},
	"go.sum":                         {"regular", true},
	"metrics/grafana-dashboard.json": {"regular", true},
	"nar/nar.go":                     {"regular", true},
	"nar/nar_test.go":                {"regular", true},
	"cmd/nixpushd/main.go":           {"regular", true},
	"nar":                            {"directory", true},
	"nar/testdata":                   {"directory", true},
	"nar/testdata/tree/link":         {"symlink", true},
	"nar/testdata/golden.nar":        {"regular", true},
	"README.md":                      {"regular", false},
	"docs/setup.md":                  {"regular", false},
	"default.nix":                    {"regular", false},
	"flake.nix":                      {"regular", false},
	"nixos-module/default.nix":       {"regular", false},
	"nixos-module/nixpushd.service":  {"regular", false},
	"Makefile":                       {"regular", false},
	".git":                           {"directory", false},
	".ci":                            {"directory", false},
	".ci/run":                        {"regular", false},
	"vendor":                         {"directory", false},
	"result":                         {"symlink", false},
	"result-bin":                     {"symlink", false},
	"nixpushd":                       {"regular", false}, // `make build` output
	"nar/.hidden.go":                 {"regular", false},
	"bench/run.sh":                   {"regular", false},
}

// evaluationExpr is the Nix expression that evaluates everything at once.
func evaluationExpr(lib string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "let h = import ./nixos-module/test/eval.nix { libPath = %s; }; in {\n", nixString(lib))
	b.WriteString("scenarios = {\n")
	sc := scenarios()
	names := make([]string, 0, len(sc))
	for n := range sc {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  %s = h.report (%s);\n", n, sc[n])
	}
	b.WriteString("};\n")
	b.WriteString("overlay = h.reportWithOverlay { services.nixpushd.enable = true; };\n")
	b.WriteString("options = h.options;\npackage = h.package;\nflake = h.flake;\n")
	b.WriteString(`builders = {
  go125 = h.builderFor "1.25.7" true;
  go126 = h.builderFor "1.26.0" true;
  go127 = h.builderFor "1.27.1" false;
  go125NoFallback = h.builderFor "1.25.7" false;
};
`)
	b.WriteString("sourceKeeps = h.sourceKeeps {\n")
	paths := make([]string, 0, len(sourcePaths))
	for p := range sourcePaths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintf(&b, "  %s = %s;\n", nixString(p), nixString(sourcePaths[p].typ))
	}
	b.WriteString("};\n}\n")
	return b.String()
}

func nixList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = nixString(s)
	}
	return strings.Join(q, " ")
}
