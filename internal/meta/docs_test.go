package meta

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

// The repository's own reference (docs/reference.md) is what users look
// things up in: these tests keep it naming every metric, command and error
// code the code has, and keep every doc's links inside the repository.

const (
	repoRoot  = "../.."
	reference = "docs/reference.md"
)

func readReference(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, reference))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parseDir parses the non-test Go files of one package directory.
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(repoRoot, dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return files
}

// stringLit returns the value of a string literal expression.
func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// keyedStrings collects the string literals given to a field named key in
// composite literals (Name: "tollgate_...", Code: "quota_exceeded").
func keyedStrings(files []*ast.File, keys ...string) []string {
	var out []string
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			kv, ok := n.(*ast.KeyValueExpr)
			if !ok {
				return true
			}
			if id, ok := kv.Key.(*ast.Ident); ok && slices.Contains(keys, id.Name) {
				if s, ok := stringLit(kv.Value); ok {
					out = append(out, s)
				}
			}
			return true
		})
	}
	return out
}

// codeArguments collects the string literals passed as a parameter named
// "code" to a function or method of the same package: deny(status, "plan_required", msg),
// conflict("same_plan", msg), invalid(400, "malformed_event", ...).
// codeConstants finds codes named as constants: const codeQuotaExceeded =
// "quota_exceeded".
func codeConstants(files []*ast.File) []string {
	var out []string
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "code") || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if v, err := strconv.Unquote(lit.Value); err == nil {
						out = append(out, v)
					}
				}
			}
			return true
		})
	}
	return out
}

func codeArguments(files []*ast.File) []string {
	index := map[string]int{} // function name → position of its code parameter
	for _, f := range files {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			i := 0
			for _, field := range fd.Type.Params.List {
				names := field.Names
				if len(names) == 0 {
					i++
					continue
				}
				for _, n := range names {
					if n.Name == "code" {
						index[fd.Name.Name] = i
					}
					i++
				}
			}
		}
	}
	var out []string
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			var name string
			switch fn := call.Fun.(type) {
			case *ast.Ident:
				name = fn.Name
			case *ast.SelectorExpr:
				name = fn.Sel.Name
			}
			if i, ok := index[name]; ok && i < len(call.Args) {
				if s, ok := stringLit(call.Args[i]); ok {
					out = append(out, s)
				}
			}
			return true
		})
	}
	return out
}

// errorCodes is every `code` of an error answer tollgate can send, read
// from the source of the packages that answer requests.
func errorCodes(t *testing.T) []string {
	t.Helper()
	var codes []string
	for _, dir := range []string{"proxy", "proxy/auth", "billing", "webhook", "internal/sidecar", "entitlements"} {
		files := parseDir(t, dir)
		codes = append(codes, keyedStrings(files, "Code", "code")...)
		codes = append(codes, codeArguments(files)...)
		codes = append(codes, codeConstants(files)...)
	}
	slices.Sort(codes)
	return slices.Compact(codes)
}

func TestErrorCodesAreFound(t *testing.T) {
	codes := errorCodes(t)
	// One code of each way codes are written: a composite literal, a
	// webhook outcome, conflict(), invalid() and Rules.deny().
	for _, want := range []string{"quota_exceeded", "processing_failed", "same_plan", "malformed_event", "plan_required"} {
		if !slices.Contains(codes, want) {
			t.Errorf("error codes found in the source %v do not include %q: the parser misses a way codes are written", codes, want)
		}
	}
	if len(codes) < 30 {
		t.Errorf("found %d error codes; want at least 30", len(codes))
	}
}

func TestReferenceNamesEveryErrorCode(t *testing.T) {
	ref := readReference(t)
	for _, c := range errorCodes(t) {
		if !strings.Contains(ref, "`"+c+"`") {
			t.Errorf("error code %q is answered by the code but not in %s (as `%s`)", c, reference, c)
		}
	}
}

func TestReferenceNamesEveryMetric(t *testing.T) {
	ref := readReference(t)
	var names []string
	for _, n := range keyedStrings(parseDir(t, "internal/metrics"), "Name") {
		if strings.HasPrefix(n, "tollgate_") {
			names = append(names, n)
		}
	}
	if len(names) < 20 {
		t.Fatalf("found %d metric names in internal/metrics; want at least 20", len(names))
	}
	for _, n := range names {
		if !regexp.MustCompile("`" + regexp.QuoteMeta(n) + "[`{]").MatchString(ref) {
			t.Errorf("metric %s is registered but not in %s", n, reference)
		}
	}
}

func TestReferenceNamesEveryCommand(t *testing.T) {
	ref := readReference(t)
	var cmds []string
	for _, f := range parseDir(t, "cmd/tollgate") {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Name.Name != "knownCommand" {
				continue
			}
			ast.Inspect(fd, func(n ast.Node) bool {
				if cc, ok := n.(*ast.CaseClause); ok {
					for _, e := range cc.List {
						if s, ok := stringLit(e); ok {
							cmds = append(cmds, s)
						}
					}
				}
				return true
			})
		}
	}
	if len(cmds) < 5 {
		t.Fatalf("found %d commands in cmd/tollgate's knownCommand; want at least 5", len(cmds))
	}
	for _, c := range cmds {
		if !strings.Contains(ref, "### `tollgate "+c) {
			t.Errorf("command %q is in knownCommand but has no \"### `tollgate %s\" heading in %s", c, c, reference)
		}
	}
}

// markdownFiles lists every .md file of the repository outside
// node_modules and .git.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git" || d.Name() == ".next") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".md") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 5 {
		t.Fatalf("found %d markdown files; want at least 5", len(out))
	}
	return out
}

var (
	fencedCode = regexp.MustCompile("(?ms)^\\s*```.*?^\\s*```[^\\n]*$")
	inlineCode = regexp.MustCompile("`[^`\\n]*`")
	inlineLink = regexp.MustCompile(`\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)
	refLink    = regexp.MustCompile(`(?m)^\s*\[[^\]]+\]:\s*(\S+)`)
	headingRe  = regexp.MustCompile("(?m)^#{1,6}\\s+(.+?)\\s*#*\\s*$")
)

// linkTargets returns the link targets of a markdown text, outside code.
func linkTargets(text string) []string {
	text = fencedCode.ReplaceAllString(text, "")
	text = inlineCode.ReplaceAllString(text, "")
	var out []string
	for _, m := range inlineLink.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	for _, m := range refLink.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

// anchors returns the heading anchors GitHub makes for a markdown text:
// lower case, punctuation other than '-' and '_' dropped, spaces as '-',
// and -1, -2, ... for repeats.
func anchors(text string) map[string]bool {
	text = fencedCode.ReplaceAllString(text, "")
	out := map[string]bool{}
	seen := map[string]int{}
	for _, m := range headingRe.FindAllStringSubmatch(text, -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// Every relative link in the repository's markdown leads to a file (or
// directory) of the repository, and every #anchor to a heading of it.
func TestMarkdownLinksResolve(t *testing.T) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, file := range markdownFiles(t) {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(repoRoot, file)
		for _, target := range linkTargets(string(raw)) {
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			path, anchor, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
			}
			abs, err := filepath.Abs(dest)
			if err != nil {
				t.Fatal(err)
			}
			if abs != root && !strings.HasPrefix(abs, root+string(filepath.Separator)) {
				t.Errorf("%s links to %q, outside the repository", rel, target)
				continue
			}
			info, err := os.Stat(dest)
			if err != nil {
				t.Errorf("%s links to %q, which does not exist", rel, target)
				continue
			}
			if anchor == "" || info.IsDir() || !strings.HasSuffix(dest, ".md") {
				continue
			}
			body, err := os.ReadFile(dest)
			if err != nil {
				t.Fatal(err)
			}
			if !anchors(string(body))[anchor] {
				t.Errorf("%s links to %q, but %s has no heading with anchor #%s", rel, target, path, anchor)
			}
		}
	}
	if checked < 20 {
		t.Errorf("checked %d relative links; want at least 20 (the link pattern no longer matches)", checked)
	}
}

// The planning copy of the product contract lives outside the repository:
// nothing in the repository may send a reader there.
func TestNothingPointsOutsideTheRepository(t *testing.T) {
	forbidden := []string{"../" + "shared", "/work/" + "shared", "shared " + "SPEC"}
	specWord := regexp.MustCompile(`\bSPEC\b`)
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "node_modules", ".git", ".next", "bin":
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() > 1<<20 {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, p)
		text := strings.ToLower(string(raw))
		for _, f := range forbidden {
			if strings.Contains(text, strings.ToLower(f)) {
				t.Errorf("%s mentions %q: point to the repository's own docs (%s) instead", rel, f, reference)
			}
		}
		// Code comments may cite the planning copy; user docs may not.
		if strings.HasSuffix(p, ".md") && specWord.Match(raw) {
			t.Errorf("%s mentions \"SPEC\": users have no SPEC; point to %s instead", rel, reference)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// configKey is one leaf key of the configuration schema.
type configKey struct {
	path string
	typ  reflect.Type
	def  reflect.Value // the default; invalid inside a map or list element
}

// configKeys walks the schema as the YAML decoder does: maps of structs
// become <name>, lists of structs [].
func configKeys(prefix string, typ reflect.Type, def reflect.Value) []configKey {
	var out []configKey
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" {
			continue
		}
		var v reflect.Value
		if def.IsValid() {
			v = def.Field(i)
		}
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)):
			out = append(out, configKeys(prefix+tag+".", ft, v)...)
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Pointer:
			out = append(out, configKeys(prefix+tag+".<name>.", ft.Elem().Elem(), reflect.Value{})...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Pointer:
			out = append(out, configKeys(prefix+tag+"[].", ft.Elem().Elem(), reflect.Value{})...)
		default:
			out = append(out, configKey{prefix + tag, ft, v})
		}
	}
	return out
}

// effectiveDefaults are defaults the code applies to an unset pointer.
var effectiveDefaults = map[string]any{"auth.jwt.forward_authorization": true}

// Every key of the schema has a row in the reference's Configuration
// tables, and the default the row states (a YAML value in backticks) is
// the one config.Default() sets.
func TestReferenceDocumentsEveryConfigKey(t *testing.T) {
	ref := readReference(t)
	keys := configKeys("", reflect.TypeOf(config.Config{}), reflect.ValueOf(*config.Default()))
	if len(keys) < 100 {
		t.Fatalf("found %d config keys; want at least 100", len(keys))
	}
	for _, k := range keys {
		row := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(k.path) + "` \\| ([^|]*) \\|")
		m := row.FindStringSubmatch(ref)
		if m == nil {
			t.Errorf("config key %s has no row (| `%s` | default | ...) in %s", k.path, k.path, reference)
			continue
		}
		if !k.def.IsValid() {
			continue // in a map or list element: no default of its own
		}
		cell := strings.TrimSpace(m[1])
		if len(cell) < 2 || cell[0] != '`' || cell[len(cell)-1] != '`' {
			t.Errorf("%s: default %q is not one YAML value in backticks", k.path, cell)
			continue
		}
		got, err := parseAsConfig(k.path, cell[1:len(cell)-1])
		if err != nil {
			t.Errorf("%s: default %s does not parse: %v", k.path, cell, err)
			continue
		}
		want := k.def.Interface()
		if e, ok := effectiveDefaults[k.path]; ok && k.def.IsNil() {
			want = e
		}
		if !sameValue(got, want) {
			t.Errorf("%s: the reference says the default is %s; the code's is %v", k.path, cell, want)
		}
	}
}

// parseAsConfig reads value as tollgate reads the key at path: a file
// holding only that key, through config.ParseEnv.
func parseAsConfig(path, value string) (any, error) {
	segs := strings.Split(path, ".")
	var doc strings.Builder
	for i, s := range segs {
		doc.WriteString(strings.Repeat("  ", i) + s + ":")
		if i < len(segs)-1 {
			doc.WriteString("\n")
		}
	}
	doc.WriteString(" " + value + "\n")
	cfg, err := config.ParseEnv(strings.NewReader(doc.String()), func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, err
	}
	v := reflect.ValueOf(cfg).Elem()
	for _, s := range segs {
		found := false
		for i := range v.NumField() {
			if strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0] == s {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("no field %s in %s", s, path)
		}
	}
	return v.Interface(), nil
}

// sameValue compares a parsed default with the code's: an empty list is
// a nil one, and a pointer is its value.
func sameValue(got, want any) bool {
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	if g.Kind() == reflect.Pointer && !g.IsNil() {
		g = g.Elem()
	}
	if g.Kind() == reflect.Slice && w.Kind() == reflect.Slice && g.Len() == 0 && w.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(g.Interface(), w.Interface())
}
