package proxy

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadPattern is wrapped by every CompilePattern error.
var ErrBadPattern = errors.New("proxy: bad route pattern")

// Pattern is a compiled route path pattern. It is matched against
// NormalizePath results, segment by segment:
//
//   - a literal segment matches itself regardless of ASCII case (many app
//     routers ignore case, so /API must not slip past an /api route; both
//     sides are canonical escaped paths, so equal bytes mean equal paths);
//   - "*" matches exactly one non-empty segment;
//   - "**", only as the last segment, matches zero or more segments, so
//     "/api/**" matches "/api", "/api/" and "/api/a/b".
//
// A trailing slash on the request path is ignored: "/admin" and "/admin/"
// match the same patterns, so a slash cannot route a request past a stricter
// route to a looser one. The zero Pattern matches nothing.
type Pattern struct {
	raw  string
	segs []string // segments before a trailing "**"
	rest bool     // pattern ends in "**"
}

// CompilePattern parses a route pattern. The pattern must start with '/',
// be a canonical path (NormalizePath(p) == p: no dot segments, no "//", no
// escapes that NormalizePath would rewrite), have no trailing slash other
// than the root "/" (matching ignores a trailing slash, so "/admin/" would
// only mislead), use "*" and "**" only as whole segments, and "**" only last.
func CompilePattern(p string) (Pattern, error) {
	if !strings.HasPrefix(p, "/") {
		return Pattern{}, fmt.Errorf("%w: %q does not start with '/'", ErrBadPattern, p)
	}
	pat := Pattern{raw: p}
	if p == "/" {
		return pat, nil
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		if err := checkPatternSegment(p, s, i == len(segs)-1); err != nil {
			return Pattern{}, err
		}
	}
	if norm, err := NormalizePath(p); err != nil || norm != p {
		return Pattern{}, fmt.Errorf("%w: %q is not a canonical path (normalised: %q, %v)", ErrBadPattern, p, norm, err)
	}
	if segs[len(segs)-1] == "**" {
		pat.rest = true
		segs = segs[:len(segs)-1]
	}
	pat.segs = segs
	return pat, nil
}

func checkPatternSegment(p, s string, last bool) error {
	switch {
	case s == "" && last:
		return fmt.Errorf("%w: %q has a trailing slash (matching ignores it; drop it)", ErrBadPattern, p)
	case s == "":
		return fmt.Errorf("%w: %q has an empty segment", ErrBadPattern, p)
	case s == "." || s == "..":
		return fmt.Errorf("%w: %q has a dot segment", ErrBadPattern, p)
	case s == "**" && !last:
		return fmt.Errorf("%w: %q has ** before the last segment", ErrBadPattern, p)
	case s != "*" && s != "**" && strings.Contains(s, "*"):
		return fmt.Errorf("%w: %q mixes * with other characters in segment %q", ErrBadPattern, p, s)
	}
	return nil
}

// Match reports whether the canonical escaped path (a NormalizePath result)
// matches p. Literal segments match without regard to ASCII case: Express,
// ASP.NET Core and others route case-insensitively, so "/api/EXPORTS" must
// not slip past a stricter "/api/exports/**" to a looser "/api/**". It does
// not allocate.
func (p Pattern) Match(path string) bool {
	if p.raw == "" || !strings.HasPrefix(path, "/") {
		return false
	}
	if len(path) > 1 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	rest := path[1:]
	more := rest != ""
	for _, want := range p.segs {
		if !more {
			return false
		}
		var seg string
		seg, rest, more = strings.Cut(rest, "/")
		if seg == "" || (want != "*" && !strings.EqualFold(seg, want)) {
			return false
		}
	}
	return p.rest || !more
}

// String returns the pattern as written.
func (p Pattern) String() string {
	return p.raw
}
