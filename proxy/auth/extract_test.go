package auth

import (
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		in, want, reason string
	}{
		{"Bearer a.b.c", "a.b.c", ""},
		{"bearer a.b.c", "a.b.c", ""},
		{"  BEARER   a-_.b.c  ", "a-_.b.c", ""},
		{"Bearer a.b.", "a.b.", ""}, // empty signature: shape-valid, the parser rejects it
		{"Bearer a.b", "", ReasonMalformed},
		{"Bearer a.b.c.d", "", ReasonMalformed},
		{"Bearer a.b.c=", "", ReasonMalformed},
		{"Bearer a+b.c.d", "", ReasonMalformed},
		{"Bearer a.b.c extra", "", ReasonMalformed},
		{"Bearer\ta.b.c", "", ReasonMalformed},
		{"Token a.b.c", "", ReasonMalformed},
		{"a.b.c", "", ReasonMalformed},
		{"Bearer " + strings.Repeat("a", 20) + ".b.c", "", ReasonTooLarge},
	}
	for _, tt := range tests {
		got, err := bearerToken(tt.in, 20)
		reason := ""
		if err != nil {
			reason = err.Reason
		}
		if got != tt.want || reason != tt.reason {
			t.Errorf("bearerToken(%q) = %q, %q; want %q, %q", tt.in, got, reason, tt.want, tt.reason)
		}
	}
}

// FuzzBearerToken: any accepted token is bounded, has exactly three
// segments and only base64url bytes; nothing panics.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer a.b.c", "bearer  x.y.z", "Basic abc", "", "Bearer ....", "Bearer \x00.a.b", "Bearer é.a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, err := bearerToken(h, 64)
		if err != nil {
			return
		}
		if len(tok) > 64 || strings.Count(tok, ".") != 2 {
			t.Fatalf("bearerToken(%q) = %q: too long or wrong shape", h, tok)
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c != '.' && c != '-' && c != '_' && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
				t.Fatalf("bearerToken(%q) = %q: byte %q outside base64url", h, tok, c)
			}
		}
	})
}

// The fast path of bearerCandidate must answer what bearerAny answers for
// every value it takes: spaces, tabs and non-ASCII spaces at either end,
// other spellings and lengths around the bound.
func TestPlainBearerIsBearerAny(t *testing.T) {
	var ins []string
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "Bearer ", "Bearer\t", "Basic"} {
		for _, tok := range []string{"", "a", "a.b.c", " a.b.c", "a.b.c ", "a.b.c\t", "a.b.c\u00a0", "a.b.c\u3000", "a.b.c\x7f", "a.b.c\x00", "é.b.c", strings.Repeat("x", 20), strings.Repeat("x", 21)} {
			ins = append(ins, scheme+" "+tok, scheme+tok, " "+scheme+" "+tok)
		}
	}
	fast := 0
	for _, h := range ins {
		checkPlainBearer(t, h)
		if plainBearer(h) {
			fast++
		}
	}
	if fast < 10 {
		t.Fatalf("only %d of the values took the fast path", fast)
	}
}

func checkPlainBearer(t *testing.T, h string) {
	t.Helper()
	if !plainBearer(h) {
		return
	}
	got, gerr := bearerCandidate(h, 20)
	want, werr := bearerAny(h, 20)
	if got != want || (gerr == nil) != (werr == nil) || gerr != nil && gerr.Reason != werr.Reason {
		t.Fatalf("bearerCandidate(%q) = %q, %v; bearerAny = %q, %v", h, got, gerr, want, werr)
	}
}

// FuzzPlainBearerIsBearerAny: for any value the fast path takes, it
// answers what bearerAny answers.
func FuzzPlainBearerIsBearerAny(f *testing.F) {
	for _, s := range []string{"Bearer a.b.c", "Bearer a.b.c ", "Bearer  a", "Bearer a\u00a0", "Bearer é"} {
		f.Add(s)
	}
	f.Fuzz(checkPlainBearer)
}
