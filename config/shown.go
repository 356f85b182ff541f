package config

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxShown is how much of a value from the file an error message quotes.
const maxShown = 80

// shown is a value from the file as an error message shows it: whole up to
// maxShown bytes, otherwise its first maxShown bytes (cut at a character
// boundary) and its length. Issue 11: a 10 MB value was printed whole.
type shown string

// Format implements fmt.Formatter: %q quotes, any other verb prints.
func (s shown) Format(f fmt.State, verb rune) {
	v := string(s)
	cut := len(v) > maxShown
	if cut {
		v = v[:maxShown]
		for len(v) > 0 && !utf8.ValidString(v) {
			v = v[:len(v)-1]
		}
	}
	if verb == 'q' {
		v = strconv.Quote(v)
	}
	io.WriteString(f, v)
	if cut {
		fmt.Fprintf(f, "… (%d bytes)", len(s))
	}
}

// showArgs returns args with every string that format quotes (%q) made a
// shown: messages quote the file's values with %q, and print their own
// text (lists of known keys, of algorithms) with %s, which stays whole.
func showArgs(format string, args []any) []any {
	out := append([]any(nil), args...)
	arg := 0
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		for i < len(format) && strings.IndexByte("+-# 0123456789.", format[i]) >= 0 {
			i++ // flags, width, precision
		}
		if i >= len(format) || format[i] == '%' {
			continue
		}
		if s, ok := argAt(out, arg).(string); ok && format[i] == 'q' {
			out[arg] = shown(s)
		}
		arg++
	}
	return out
}

func argAt(args []any, i int) any {
	if i < len(args) {
		return args[i]
	}
	return nil
}

// fieldError is a FieldError whose path and message arguments are cut to
// size (a path holds the file's own keys).
func fieldError(path string, line int, format string, args ...any) *FieldError {
	if len(path) > 2*maxShown {
		path = fmt.Sprint(shown(path))
	}
	return &FieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, showArgs(format, args)...)}
}
