package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FieldError is one problem with one field of the configuration.
type FieldError struct {
	Path string // e.g. routes[2].require.features
	Line int    // line in the YAML file, 0 when unknown
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Path, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// Errors Parse returns instead of a configuration.
var (
	// ErrEmpty is a file with no YAML document.
	ErrEmpty = errors.New("config: empty configuration")
	// ErrTooManyNodes is a file that expands to more than MaxNodes nodes.
	ErrTooManyNodes = errors.New("config: too many YAML nodes")
)

// MaxNodes bounds the YAML nodes (values, list items, mappings) a
// configuration file may hold, counted with its aliases expanded: an alias
// stands for everything its anchor holds, so a small file of nested
// anchors can stand for billions of nodes (the "billion laughs"), and an
// alias inside its own anchor for infinitely many. Issue 11: the decoder
// followed aliases without a bound (a 33 KB file took seconds and
// hundreds of MB). A real configuration holds a few hundred nodes; 100,000
// is far above any, and decoding that many takes milliseconds.
const MaxNodes = 100_000

// Parse reads YAML on top of Default(). Unknown keys, wrong types and unset
// ${VAR} references are reported together, each a *FieldError with its path.
// With such field errors Parse still returns the configuration decoded so
// far (bad fields keep their defaults), so that a caller can run Validate
// and report every problem of the file in one go; a YAML syntax error
// returns a nil configuration.
func Parse(r io.Reader) (*Config, error) {
	return ParseEnv(r, os.LookupEnv)
}

// ParseEnv is Parse with the environment lookup injected (tests).
func ParseEnv(r io.Reader, lookup func(string) (string, bool)) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("config: read: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, ErrEmpty
	}
	cfg := Default()
	d := decoder{lookup: lookup, lines: map[string]int{}, envs: map[string][]string{}}
	d.decode("", doc.Content[0], reflect.ValueOf(cfg).Elem())
	if d.overflow != nil {
		return nil, fmt.Errorf("%w: line %d: the file holds more than %d once its aliases are expanded "+
			"(an alias repeats everything its anchor holds); write the values out, or use fewer aliases",
			ErrTooManyNodes, d.overflow.Line, MaxNodes)
	}
	cfg.lines, cfg.envs = d.lines, d.envs
	return cfg, errors.Join(d.errs...)
}

// Load is ParseEnv then Validate: the configuration, or every problem of
// the file (field errors and validation errors) joined.
func Load(r io.Reader, lookup func(string) (string, bool)) (*Config, error) {
	cfg, err := ParseEnv(r, lookup)
	if cfg == nil {
		return nil, err
	}
	all := append(Problems(err), Problems(cfg.Validate())...)
	if len(all) == 0 {
		return cfg, nil
	}
	// In file order: a reader fixes them top to bottom.
	sort.SliceStable(all, func(i, j int) bool { return lineOf(all[i]) < lineOf(all[j]) })
	return nil, errors.Join(all...)
}

// lineOf is the file line of a problem; problems without one sort last.
func lineOf(err error) int {
	var fe *FieldError
	if errors.As(err, &fe) && fe.Line > 0 {
		return fe.Line
	}
	return math.MaxInt
}

// Problems flattens an error from Parse, Load or Validate into its single
// problems, in order, for printing one per line.
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, Problems(e)...)
	}
	return out
}

type decoder struct {
	lookup func(string) (string, bool)
	errs   []error
	lines  map[string]int
	envs   map[string][]string
	// nodes counts the nodes decoded, aliases expanded; past MaxNodes,
	// overflow is the node where decoding stopped.
	nodes    int
	overflow *yaml.Node
}

func (d *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	if path == "" {
		path = "(top level)"
	}
	d.errs = append(d.errs, fieldError(path, n.Line, format, args...))
}

var durationType = reflect.TypeOf(time.Duration(0))

// decode walks the YAML tree and the Go value together, so that every error
// can name the field it is about, and all of them are collected.
func (d *decoder) decode(path string, n *yaml.Node, v reflect.Value) {
	if d.overflow != nil {
		return
	}
	if d.nodes++; d.nodes > MaxNodes {
		d.overflow = n
		return
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value keeps the default
	}
	switch {
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(path, n, v.Elem())
	case v.Kind() == reflect.Struct:
		d.decodeStruct(path, n, v)
	case v.Kind() == reflect.Map:
		d.decodeMap(path, n, v)
	case v.Kind() == reflect.Slice:
		d.decodeSlice(path, n, v)
	default:
		d.decodeScalar(path, n, v)
	}
}

func (d *decoder) decodeStruct(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "want a mapping of keys, got %s", kindName(n))
		return
	}
	fields := map[string]int{}
	t := v.Type()
	for i := range t.NumField() {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" {
			fields[tag] = i
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		idx, ok := fields[k.Value]
		if !ok {
			d.fail(p, k, "unknown key (known keys: %s)", strings.Join(sortedKeys(fields), ", "))
			continue
		}
		if seen[k.Value] {
			d.fail(p, k, "key given twice")
			continue
		}
		seen[k.Value] = true
		d.decode(p, val, v.Field(idx))
	}
}

func (d *decoder) decodeMap(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "want a mapping, got %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		if k.Value == "" {
			d.fail(p, k, "empty key")
			continue
		}
		if v.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
			d.fail(p, k, "key given twice")
			continue
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		if elem.Kind() == reflect.Pointer {
			// An empty entry ("plans: { pro: }") is an empty mapping,
			// which validation then describes, not a nil to trip on.
			elem.Set(reflect.New(elem.Type().Elem()))
		}
		d.decode(p, val, elem)
		v.SetMapIndex(reflect.ValueOf(k.Value), elem)
	}
}

func (d *decoder) decodeSlice(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.fail(path, n, "want a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(fmt.Sprintf("%s[%d]", path, i), item, s.Index(i))
	}
	v.Set(s)
}

func (d *decoder) decodeScalar(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, n, "want a single value, got %s", kindName(n))
		return
	}
	value, ok := d.expand(path, n)
	if !ok {
		return
	}
	var err error
	switch {
	case v.Type() == durationType:
		var dur time.Duration
		dur, err = time.ParseDuration(value)
		if err != nil {
			d.fail(path, n, "%q is not a duration (write it like 500ms, 30s, 5m or 72h)", value)
			return
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		v.SetString(value)
	case v.Kind() == reflect.Bool:
		var b bool
		b, err = strconv.ParseBool(value)
		if err != nil {
			d.fail(path, n, "%q is not true or false", value)
			return
		}
		v.SetBool(b)
	case v.CanInt():
		var i int64
		i, err = strconv.ParseInt(value, 10, 64)
		if err != nil || v.OverflowInt(i) {
			d.fail(path, n, "%q is not a whole number", value)
			return
		}
		v.SetInt(i)
	default:
		d.fail(path, n, "unsupported field type %s", v.Type())
	}
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand replaces ${VAR} in a scalar's text. It runs on parsed values, never
// on the raw file, so a variable's content cannot inject YAML structure.
// An unset variable is an error: an empty secret must never pass silently.
func (d *decoder) expand(path string, n *yaml.Node) (string, bool) {
	ok := true
	out := envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		val, set := d.lookup(name)
		if !set {
			d.fail(path, n, "environment variable %s is not set", shown(name))
			ok = false
		} else {
			d.envs[path] = append(d.envs[path], name)
		}
		return val
	})
	return out, ok
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", shown(n.Value))
	}
	return "something else"
}
