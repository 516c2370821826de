package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// allowedPairs are both-way file pairs left for now, as "dir/a.go dir/b.go"
// (module-relative, sorted).
// None are left; an entry must say why it is allowed.
var allowedPairs = map[string]string{}

// TestNoBothWayFiles checks every non-test package of the module: no two
// of its files use each other's declarations.
func TestNoBothWayFiles(t *testing.T) {
	root := moduleRoot(t)
	pkgs := listPackages(t, root)
	exports := map[string]string{}
	for _, p := range pkgs {
		if p.Export != "" {
			exports[p.ImportPath] = p.Export
		}
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
	var bad []string
	allowedSeen := map[string]bool{}
	checked := 0
	for _, p := range pkgs {
		if p.DepOnly || p.Standard {
			continue
		}
		files := append(append([]string{}, p.GoFiles...), p.CgoFiles...)
		if len(files) == 0 {
			continue
		}
		g, err := fileGraph(fset, imp, p.ImportPath, p.Dir, files, len(p.CgoFiles) > 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, pr := range g.pairs() {
			a, b := filepath.ToSlash(filepath.Join(rel, pr.a)), filepath.ToSlash(filepath.Join(rel, pr.b))
			if _, ok := allowedPairs[a+" "+b]; ok {
				allowedSeen[a+" "+b] = true
				continue
			}
			bad = append(bad, fmt.Sprintf("%s ↔ %s: %s uses %s; %s uses %s",
				a, b, pr.a, strings.Join(pr.ab, ", "), pr.b, strings.Join(pr.ba, ", ")))
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d packages; go list found too few", checked)
	}
	for p := range allowedPairs {
		if !allowedSeen[p] {
			t.Errorf("%s no longer use each other both ways: remove the pair from allowedPairs", p)
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d file pairs use each other's declarations both ways; move the shared declarations to the file of the concern that owns them:\n%s",
			len(bad), strings.Join(bad, "\n"))
	}
}

// TestCheckerFindsPairs runs the checker on testdata/pairs, where a.go and
// b.go use each other and c.go uses a.go only.
func TestCheckerFindsPairs(t *testing.T) {
	dir := filepath.Join("testdata", "pairs")
	fset := token.NewFileSet()
	noImports := importerFunc(func(path string) (*types.Package, error) {
		return nil, fmt.Errorf("unexpected import %s", path)
	})
	g, err := fileGraph(fset, noImports, "example.com/pairs", dir, []string{"a.go", "b.go", "c.go"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := g.uses["c.go"]["a.go"]; strings.Join(got, ",") != "A,A.n" {
		t.Errorf("c.go uses of a.go = %v, want [A A.n]", got)
	}
	if len(g.uses["a.go"]["c.go"]) != 0 {
		t.Errorf("a.go should not use c.go, got %v", g.uses["a.go"]["c.go"])
	}
	prs := g.pairs()
	if len(prs) != 1 {
		t.Fatalf("pairs = %+v, want only a.go ↔ b.go", prs)
	}
	pr := prs[0]
	if pr.a != "a.go" || pr.b != "b.go" {
		t.Fatalf("pair = %s ↔ %s, want a.go ↔ b.go", pr.a, pr.b)
	}
	if strings.Join(pr.ab, ",") != "B,B.a" || strings.Join(pr.ba, ",") != "A,A.n" {
		t.Errorf("names = %v / %v, want [B B.a] / [A A.n]", pr.ab, pr.ba)
	}
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }

type goPackage struct {
	ImportPath string
	Dir        string
	Export     string
	GoFiles    []string
	CgoFiles   []string
	Standard   bool
	DepOnly    bool
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("not inside a module; run the test from the repository")
	}
	return filepath.Dir(gomod)
}

// listPackages asks go list for the module's packages and the export data
// of everything they import (built offline from the build cache).
func listPackages(t *testing.T, root string) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-export",
		"-json=ImportPath,Dir,Export,GoFiles,CgoFiles,Standard,DepOnly", "./...")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOPROXY=off") // no network: the module cache has what builds
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// graph maps a file to the files whose declarations it uses, with the
// names used (sorted, deduplicated).
type graph struct {
	uses map[string]map[string][]string
}

type pair struct {
	a, b   string   // a < b
	ab, ba []string // a few names a uses from b, and b from a
}

func (g graph) pairs() []pair {
	var out []pair
	for a, deps := range g.uses {
		for b, ab := range deps {
			if a >= b {
				continue
			}
			if ba := g.uses[b][a]; len(ba) > 0 {
				out = append(out, pair{a: a, b: b, ab: few(ab), ba: few(ba)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].a != out[j].a {
			return out[i].a < out[j].a
		}
		return out[i].b < out[j].b
	})
	return out
}

func few(names []string) []string {
	if len(names) > 4 {
		return append(append([]string{}, names[:4]...), fmt.Sprintf("… (%d in all)", len(names)))
	}
	return names
}

// fileGraph type-checks the files of one package and records, for every
// use of a declaration of the same package, which file uses which.
// A cgo package is checked with import "C" faked, its errors ignored.
func fileGraph(fset *token.FileSet, imp types.Importer, path, dir string, names []string, cgo bool) (graph, error) {
	var files []*ast.File
	for _, n := range names {
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.SkipObjectResolution)
		if err != nil {
			return graph{}, err
		}
		files = append(files, f)
	}
	var errs []error
	conf := types.Config{
		Importer:    imp,
		FakeImportC: cgo,
		Error:       func(err error) { errs = append(errs, err) },
	}
	info := &types.Info{
		Uses:       map[*ast.Ident]types.Object{},
		Selections: map[*ast.SelectorExpr]*types.Selection{},
	}
	pkg, _ := conf.Check(path, fset, files, info)
	if len(errs) > 0 && !cgo {
		return graph{}, fmt.Errorf("type-check %s: %w", path, errors.Join(errs...))
	}

	seen := map[string]map[string]map[string]bool{}
	add := func(at token.Pos, obj types.Object) {
		if obj == nil || obj.Pkg() != pkg || !obj.Pos().IsValid() {
			return
		}
		from := filepath.Base(fset.Position(at).Filename)
		to := filepath.Base(fset.Position(obj.Pos()).Filename)
		if from == to {
			return
		}
		if seen[from] == nil {
			seen[from] = map[string]map[string]bool{}
		}
		if seen[from][to] == nil {
			seen[from][to] = map[string]bool{}
		}
		seen[from][to][objName(obj)] = true
	}
	for id, obj := range info.Uses {
		add(id.Pos(), obj)
	}
	// x.f where f is promoted also uses the embedded fields on the way.
	for sel, s := range info.Selections {
		typ := s.Recv()
		idx := s.Index()
		for _, i := range idx[:len(idx)-1] {
			st, ok := deref(typ).Underlying().(*types.Struct)
			if !ok {
				break
			}
			f := st.Field(i)
			add(sel.Sel.Pos(), f)
			typ = f.Type()
		}
	}

	g := graph{uses: map[string]map[string][]string{}}
	for from, tos := range seen {
		g.uses[from] = map[string][]string{}
		for to, set := range tos {
			var ns []string
			for n := range set {
				ns = append(ns, n)
			}
			sort.Strings(ns)
			g.uses[from][to] = ns
		}
	}
	return g, nil
}

func deref(t types.Type) types.Type {
	if p, ok := t.Underlying().(*types.Pointer); ok {
		return p.Elem()
	}
	return t
}

// objName names a method or field with its type: "Daemon.Run", "A.n".
func objName(obj types.Object) string {
	switch o := obj.(type) {
	case *types.Func:
		if recv := o.Signature().Recv(); recv != nil {
			return typeName(recv.Type()) + "." + o.Name()
		}
	case *types.Var:
		if o.IsField() {
			if owner := fieldOwner(o); owner != "" {
				return owner + "." + o.Name()
			}
		}
	}
	return obj.Name()
}

func typeName(t types.Type) string {
	if n, ok := deref(t).(*types.Named); ok {
		return n.Obj().Name()
	}
	return t.String()
}

// fieldOwner finds the named type of the package whose struct declares f.
func fieldOwner(f *types.Var) string {
	scope := f.Pkg().Scope()
	for _, n := range scope.Names() {
		tn, ok := scope.Lookup(n).(*types.TypeName)
		if !ok {
			continue
		}
		st, ok := tn.Type().Underlying().(*types.Struct)
		if !ok {
			continue
		}
		for i := range st.NumFields() {
			if st.Field(i) == f {
				return tn.Name()
			}
		}
	}
	return ""
}
