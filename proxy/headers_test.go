package proxy

import (
	"encoding/hex"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// reservedNames are header spellings a client may use to spoof tollgate's
// identity headers. CVE-2015-0219: CGI/WSGI backends read '_' as '-', PHP
// also reads '.', so every spelling reaches the app as X-Tollgate-User.
var reservedNames = []string{
	"X-Tollgate-User",
	"x-tollgate-user",
	"X-TOLLGATE-CUSTOMER",
	"X_Tollgate_User",
	"x_tollgate_plan",
	"X.Tollgate.Status",
	"X-Tollgate_Features",
	"x.tollgate-Usage",
	"X_TOLLGATE.user",
	"X-Tollgate",
	"x_tollgate",
	"X-Tollgate-",
	"X-Tollgate_",
	"X-Tollgate--",
	"X-Tollgate-\xff",
}

var unreservedNames = []string{
	"",
	"X",
	"X-Tollgat",
	"X-Tollgatex",
	"X-Tollgate2",
	"X-TollgateUser",
	"X-Toll-Gate-User",
	"Tollgate-User",
	"XX-Tollgate-User",
	"X--Tollgate-User",
	" X-Tollgate-User",
	"X-Forwarded-For",
	"Authorization",
	"X-Tollgate\x00-User",
}

func TestIsReserved(t *testing.T) {
	for _, name := range reservedNames {
		if !IsReserved(name) {
			t.Errorf("IsReserved(%q) = false; want true", name)
		}
	}
	for _, name := range unreservedNames {
		if IsReserved(name) {
			t.Errorf("IsReserved(%q) = true; want false", name)
		}
	}
}

func TestStripReserved(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{
			name: "nil header",
			in:   nil,
			want: nil,
		},
		{
			name: "canonical spoof",
			in:   http.Header{"X-Tollgate-User": {"admin"}, "Accept": {"*/*"}},
			want: http.Header{"Accept": {"*/*"}},
		},
		{
			// CVE-2015-0219: the app reads X_Tollgate_User as X-Tollgate-User.
			name: "underscore and dot spellings",
			in: http.Header{
				"X_tollgate_user":     {"admin"},
				"X.tollgate.customer": {"cus_victim"},
				"x-tollgate-plan":     {"pro"}, // non-canonical key set directly
				"X-Tollgate":          {"1"},
				"X-Tollgateway":       {"kept"},
			},
			want: http.Header{"X-Tollgateway": {"kept"}},
		},
		{
			name: "many values",
			in:   http.Header{"X-Tollgate-Features": {"exports", "admin"}, "Cookie": {"a=b"}},
			want: http.Header{"Cookie": {"a=b"}},
		},
		{
			name: "nothing reserved",
			in:   http.Header{"Accept": {"*/*"}, "X-Request-Id": {"abc"}},
			want: http.Header{"Accept": {"*/*"}, "X-Request-Id": {"abc"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			StripReserved(tt.in)
			if !reflect.DeepEqual(tt.in, tt.want) {
				t.Errorf("StripReserved = %v; want %v", tt.in, tt.want)
			}
		})
	}
}

// isReservedSpec is the SPEC's wording taken literally, as a reference model
// for the allocation-free IsReserved.
func isReservedSpec(name string) bool {
	n := strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
	return n == "x-tollgate" || strings.HasPrefix(n, "x-tollgate-")
}

// FuzzStripReserved checks that no reserved name survives StripReserved and
// that every other header is left untouched.
func FuzzStripReserved(f *testing.F) {
	for _, name := range reservedNames {
		f.Add(name)
	}
	for _, name := range unreservedNames {
		f.Add(name)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := IsReserved(name), isReservedSpec(name); got != want {
			t.Fatalf("IsReserved(%q) = %v; want %v", name, got, want)
		}
		h := http.Header{
			name:                                   {"spoofed"},
			http.CanonicalHeaderKey(name):          {"spoofed"},
			"X-Other":                              {"kept"},
			strings.ReplaceAll(name, "-", "_"):     {"spoofed"},
			strings.ToUpper(name) + "-Suffix-Name": {"spoofed"},
		}
		orig := h.Clone()
		StripReserved(h)
		for k := range h {
			if IsReserved(k) || isReservedSpec(k) {
				t.Fatalf("StripReserved left reserved header %q", k)
			}
		}
		for k, v := range orig {
			if isReservedSpec(k) {
				continue
			}
			if !reflect.DeepEqual(h[k], v) {
				t.Fatalf("StripReserved changed non-reserved %q: %q; want %q", k, h[k], v)
			}
		}
	})
}

func TestValidRequestID(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "hex", in: "0123456789abcdef0123456789abcdef", want: true},
		{name: "uuid", in: "123e4567-e89b-12d3-a456-426614174000", want: true},
		{name: "all allowed punctuation", in: "a.b_c:d-e", want: true},
		{name: "one byte", in: "x", want: true},
		{name: "max length", in: strings.Repeat("a", 128), want: true},
		{name: "empty", in: "", want: false},
		{name: "too long", in: strings.Repeat("a", 129), want: false},
		// CWE-117: CR/LF in an id would forge log lines.
		{name: "CRLF log injection", in: "abc\r\nlevel=error msg=forged", want: false},
		{name: "space", in: "a b", want: false},
		{name: "quote", in: `a"b`, want: false},
		{name: "slash", in: "a/b", want: false},
		{name: "NUL", in: "a\x00", want: false},
		{name: "unicode", in: "café", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidRequestID(tt.in); got != tt.want {
				t.Errorf("ValidRequestID(%q) = %v; want %v", tt.in, got, tt.want)
			}
		})
	}
}

// Ids are well formed and never repeat, across the blocks they are
// cut from and from goroutines sharing the blocks' pool.
func TestNewRequestID(t *testing.T) {
	const each, goroutines = 2500, 4 // each goroutine crosses many blocks of 32 ids
	ids := make(chan string, each*goroutines)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				ids <- NewRequestID()
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := make(map[string]bool)
	for id := range ids {
		if len(id) != 32 {
			t.Fatalf("len(NewRequestID()) = %d; want 32 (%q)", len(id), id)
		}
		if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
			t.Fatalf("NewRequestID() = %q; want lowercase hex", id)
		}
		if !ValidRequestID(id) {
			t.Fatalf("ValidRequestID(NewRequestID()) = false for %q; want true", id)
		}
		if seen[id] || id == strings.Repeat("0", 32) {
			t.Fatalf("NewRequestID() repeated %q (or handed out cleared bytes)", id)
		}
		seen[id] = true
	}
}
