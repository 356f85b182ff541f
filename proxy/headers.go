package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
)

// reservedPrefix is the header namespace tollgate owns (SPEC "Paths and
// headers"): identity headers it sets for the application and X-Tollgate-Usage
// it reads back from the application.
const reservedPrefix = "x-tollgate"

// IsReserved reports whether a header name is in tollgate's reserved
// namespace: lowercased, with '_' and '.' read as '-', it equals "x-tollgate"
// or starts with "x-tollgate-". The folding matters because the application
// may not see the name tollgate saw: CGI/WSGI/PHP map both '-' and '_' to '_'
// (HTTP_X_TOLLGATE_USER), and PHP also maps '.', so a client sending
// X_Tollgate_User would otherwise spoof X-Tollgate-User past a check on the
// exact spelling (CVE-2015-0219: WSGI header spoofing via underscore/dash
// conflation).
func IsReserved(name string) bool {
	if len(name) < len(reservedPrefix) {
		return false
	}
	for i := 0; i < len(reservedPrefix); i++ {
		if foldHeaderByte(name[i]) != reservedPrefix[i] {
			return false
		}
	}
	return len(name) == len(reservedPrefix) || foldHeaderByte(name[len(reservedPrefix)]) == '-'
}

// foldHeaderByte lowercases ASCII and reads '_' and '.' as '-'. Non-ASCII
// bytes are left alone: no byte of "x-tollgate" has a non-ASCII spelling that
// Go's net/http would accept in a header name.
func foldHeaderByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + ('a' - 'A')
	case c == '_' || c == '.':
		return '-'
	}
	return c
}

// StripReserved removes every reserved header (see IsReserved) from h,
// whatever the spelling of its key, so no client-supplied value can pose as
// one tollgate sets. The proxy calls it on every inbound request, before any
// route, auth or error decision.
func StripReserved(h http.Header) {
	for name := range h {
		if IsReserved(name) {
			delete(h, name) // deleting during range is safe in Go
		}
	}
}

// maxRequestIDLen bounds a client-supplied request id, which ends up in logs
// and in the upstream request.
const maxRequestIDLen = 128

// ValidRequestID reports whether s may be propagated as a request id: 1 to
// 128 bytes of [A-Za-z0-9._:-]. Anything else (CR/LF, quotes, spaces, long
// values) is replaced by a fresh id instead of being trusted, since ids are
// written to logs and headers (log injection, CWE-117).
func ValidRequestID(s string) bool {
	if len(s) == 0 || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isRequestIDByte(s[i]) {
			return false
		}
	}
	return true
}

func isRequestIDByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '.' || c == '_' || c == ':' || c == '-'
}

// NewRequestID returns 16 random bytes from crypto/rand as 32 lowercase hex
// characters. Unpredictable ids keep one client from guessing and colliding
// with another's. The bytes are read from crypto/rand 512 at a time and
// written out in hex once (requestIDBytes): an id is then a cut of that
// string, each byte used once, with no encoding or allocation of its own
// (issue 13). The raw bytes are cleared once encoded.
func NewRequestID() string {
	src := requestIDBytes.Get().(*idSource)
	if src.off == len(src.hex) {
		var raw [idBlock]byte
		rand.Read(raw[:]) // never returns an error since Go 1.24; it crashes the program instead
		src.hex = hex.EncodeToString(raw[:])
		clear(raw[:])
		src.off = 0
	}
	id := src.hex[src.off : src.off+32]
	src.off += 32
	requestIDBytes.Put(src)
	return id
}

// idBlock is how many random bytes NewRequestID reads at a time: 32 ids.
const idBlock = 512

// idSource is a block of random bytes in hex that NewRequestID hands out,
// 32 characters at a time. An id handed out keeps its block's 1 KiB
// string alive while it is referenced; ids live as long as a request.
type idSource struct {
	hex string
	off int
}

var requestIDBytes = sync.Pool{New: func() any { return new(idSource) }}
