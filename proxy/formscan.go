package proxy

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
)

// Scanners that find a `_method` field in a form body as it streams past,
// reading it once, in bounded memory, without changing a byte.

var (
	// errOverrideField: the form (or query) has a _method field.
	errOverrideField = errors.New("proxy: _method field in the request")
	// errUncheckable: the form cannot be read the way every app would
	// read it, so whether it holds _method is ambiguous.
	errUncheckable = errors.New("proxy: form body cannot be checked for _method")
)

// overrideName is the field Rails (Rack::MethodOverride), Laravel, Symfony
// and Express's method-override read a method from.
const overrideName = "_method"

// maxPartHeader bounds one multipart part's header block.
const maxPartHeader = 16 << 10

// fieldScanner is fed a body chunk by chunk; Write and Close return
// errOverrideField (or errUncheckable) as soon as the body is known to
// hold _method.
type fieldScanner interface {
	Write(p []byte) error
	Close() error // the body ended
}

// keyFolder decides whether one field name, fed byte by byte as the app
// will have decoded it, names _method. It folds the spellings different
// parsers read as _method: leading spaces are skipped and '.' and ' ' read
// as '_' (PHP), ASCII case is ignored, and the name ends at '[' (PHP and
// Rack arrays: _method[], _method[x]) or NUL (C strings). Only the first
// len("_method")+1 folded bytes matter, so memory stays bounded.
type keyFolder struct {
	n       int  // folded bytes of the base kept in buf
	started bool // past the leading spaces
	ended   bool // past '[' or NUL: the rest is not the base
	long    bool // the base is longer than _method
	buf     [len(overrideName)]byte
}

func (k *keyFolder) reset() { *k = keyFolder{} }

func (k *keyFolder) add(c byte) {
	switch {
	case k.ended || k.long:
		return
	case !k.started && (c == ' ' || c == '\t' || c == '\r' || c == '\n'):
		return
	case c == '[' || c == 0:
		k.ended = true
		return
	}
	k.started = true
	switch {
	case c == '.' || c == ' ':
		c = '_'
	case 'A' <= c && c <= 'Z':
		c += 'a' - 'A'
	}
	if k.n == len(k.buf) {
		k.long = true
		return
	}
	k.buf[k.n] = c
	k.n++
}

// override reports whether the name fed so far is _method.
func (k *keyFolder) override() bool {
	return !k.long && k.n == len(overrideName) && string(k.buf[:]) == overrideName
}

// urlencodedScanner reads application/x-www-form-urlencoded (and query
// strings): pairs split on '&' or ';' (older Rack and some servers split
// on both), names percent-decoded with '+' as space.
type urlencodedScanner struct {
	inValue bool
	esc     int  // hex digits still expected after '%' (0, 1 or 2)
	hex     byte // the escape's value so far
	raw     [2]byte
	key     keyFolder
}

func (s *urlencodedScanner) Write(p []byte) error {
	for _, c := range p {
		if err := s.byte(c); err != nil {
			return err
		}
	}
	return nil
}

func (s *urlencodedScanner) byte(c byte) error {
	if c == '&' || c == ';' {
		return s.endPair()
	}
	if s.inValue {
		return nil
	}
	if s.esc > 0 {
		if !isHex(c) {
			// An invalid escape is kept literally (PHP) or refused by the
			// app (Rack); feed it as written.
			s.key.add('%')
			if s.esc == 1 {
				s.key.add(s.raw[0])
			}
			s.esc = 0
			return s.byte(c)
		}
		s.raw[2-s.esc] = c
		s.hex = s.hex<<4 | unhex(c)
		if s.esc--; s.esc == 0 {
			s.key.add(s.hex)
		}
		return nil
	}
	switch c {
	case '=':
		s.flushEscape()
		s.inValue = true
		if s.key.override() {
			return errOverrideField
		}
	case '%':
		s.esc, s.hex = 2, 0
	case '+':
		s.key.add(' ')
	default:
		s.key.add(c)
	}
	return nil
}

// flushEscape feeds an escape cut short by the end of the name.
func (s *urlencodedScanner) flushEscape() {
	if s.esc == 0 {
		return
	}
	s.key.add('%')
	if s.esc == 1 {
		s.key.add(s.raw[0])
	}
	s.esc = 0
}

func (s *urlencodedScanner) endPair() error {
	s.flushEscape()
	hit := !s.inValue && s.key.override() // "_method" alone is a field too
	s.inValue = false
	s.key.reset()
	if hit {
		return errOverrideField
	}
	return nil
}

func (s *urlencodedScanner) Close() error { return s.endPair() }

// queryHasOverride reports whether a raw query string holds _method.
func queryHasOverride(raw string) bool {
	if raw == "" {
		return false
	}
	var s urlencodedScanner
	return s.Write([]byte(raw)) != nil || s.Close() != nil
}

// multipartScanner reads multipart/* bodies (Rack parses multipart/mixed
// and multipart/related as forms too): it finds every part's header block
// after a boundary delimiter and checks the names its Content-Disposition
// gives the part. A delimiter is recognised after LF as well as CRLF, and
// header blocks may end with LF LF, because lenient parsers accept both.
type multipartScanner struct {
	delim   []byte // "\n--" + boundary
	window  []byte // unprocessed bytes: a possible delimiter's start, or a header block
	inHead  bool   // between a delimiter and the blank line ending the part's headers
	skipped bool   // the rest of the delimiter line was checked for the close "--"
	done    bool   // past the close delimiter: the epilogue is not parsed
}

func newMultipartScanner(boundary string) *multipartScanner {
	// The body's first line may be the first delimiter: read the body as
	// if a line break preceded it.
	return &multipartScanner{delim: []byte("\n--" + boundary), window: []byte("\n")}
}

func (s *multipartScanner) Write(p []byte) error {
	if s.done {
		return nil
	}
	s.window = append(s.window, p...)
	for {
		progressed, err := s.step()
		if err != nil || !progressed || s.done {
			return err
		}
	}
}

// step consumes what it can of the window; false when it needs more bytes.
func (s *multipartScanner) step() (bool, error) {
	if !s.inHead {
		i := bytes.Index(s.window, s.delim)
		if i < 0 {
			// Keep just enough to see a delimiter that spans two writes.
			if keep := len(s.delim) - 1; len(s.window) > keep {
				s.window = append(s.window[:0], s.window[len(s.window)-keep:]...)
			}
			return false, nil
		}
		s.window = append(s.window[:0], s.window[i+len(s.delim):]...)
		s.inHead, s.skipped = true, false
	}
	if !s.skipped {
		if len(s.window) < 2 {
			return false, nil
		}
		if s.window[0] == '-' && s.window[1] == '-' {
			s.done = true
			return true, nil
		}
		s.skipped = true
	}
	end, next := headerEnd(s.window)
	if end < 0 {
		if len(s.window) > maxPartHeader {
			return false, errUncheckable
		}
		return false, nil
	}
	head := s.window[:end]
	if partNamesOverride(head) {
		return false, errOverrideField
	}
	s.window = append(s.window[:0], s.window[next:]...)
	s.inHead = false
	return true, nil
}

// headerEnd finds the blank line that ends a part's headers (the block
// starts with the rest of the delimiter line). It returns the end of the
// block and where the part's content starts, or -1.
func headerEnd(b []byte) (end, next int) {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i, i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i, i + 3
		}
	}
	return -1, 0
}

// Close implements fieldScanner: a part whose header block never ended is
// not a field any parser will deliver.
func (s *multipartScanner) Close() error { return nil }

// nameParam finds every name parameter of a Content-Disposition value, as
// a lenient parser would: name, name* (RFC 2231/5987), quoted or not, any
// case, with spaces around "=". filename does not match (\b).
var nameParam = regexp.MustCompile(`(?i)\bname(\*[0-9]*\*?)?\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)`)

// partNamesOverride reports whether a part header block names the part
// _method (or cannot be read without ambiguity: continued RFC 2231 names,
// name*0=...; name*1=..., are refused).
func partNamesOverride(head []byte) bool {
	for _, line := range unfold(string(head)) {
		name, value, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "content-disposition") {
			continue
		}
		for _, m := range nameParam.FindAllStringSubmatch(value, -1) {
			if strings.Trim(m[1], "*") != "" {
				return true // name*0=, name*1=: split across parameters
			}
			if paramIsOverride(m[2], m[1] != "") {
				return true
			}
		}
	}
	return false
}

// unfold splits a header block into header lines, joining obsolete line
// folding (a line starting with a space or tab continues the previous).
func unfold(block string) []string {
	var out []string
	for _, l := range strings.Split(block, "\n") {
		l = strings.TrimSuffix(l, "\r")
		if len(out) > 0 && l != "" && (l[0] == ' ' || l[0] == '\t') {
			out[len(out)-1] += " " + strings.TrimSpace(l)
			continue
		}
		out = append(out, l)
	}
	return out
}

// paramIsOverride decodes one name parameter value and folds it.
func paramIsOverride(v string, extended bool) bool {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = strings.NewReplacer(`\\`, `\`, `\"`, `"`).Replace(v[1 : len(v)-1])
	}
	if extended {
		// charset'language'value, percent-encoded.
		if i := strings.LastIndexByte(v, '\''); i >= 0 {
			v = v[i+1:]
		}
	}
	// Some parsers percent-decode names (or the app does); fold both
	// forms so %5Fmethod cannot slip past either reading.
	var plain keyFolder
	for i := 0; i < len(v); i++ {
		plain.add(v[i])
	}
	if plain.override() {
		return true
	}
	var dec urlencodedScanner
	return dec.Write([]byte(strings.ReplaceAll(v, "+", "%2B"))) != nil || dec.Close() != nil
}
