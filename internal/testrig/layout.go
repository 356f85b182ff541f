package testrig

import (
	"testing"
	"unsafe"
)

// CacheLine is the size of a CPU cache line on the machines tollgate runs on.
const CacheLine = 64

// FieldEnd is where a field ends in its struct: pass
// unsafe.Offsetof(x.f), unsafe.Sizeof(x.f).
func FieldEnd(offset, size uintptr) uintptr { return offset + size }

// WithinLines fails tb for each field (name → FieldEnd) that ends past the
// first lines cache lines of typ: the fields a hot path reads, kept
// together so that it reads no more lines than that (issue 13).
func WithinLines(tb testing.TB, typ string, lines int, ends map[string]uintptr) {
	tb.Helper()
	for f, n := range ends {
		if n > uintptr(lines*CacheLine) {
			tb.Errorf("%s.%s ends at byte %d, past the first %d cache lines", typ, f, n, lines)
		}
	}
}

// StartsOnLine fails tb unless values of T allocated one by one start on
// a cache line, as they do when T's size class is a multiple of 64 bytes:
// only then are a value's first lines its own.
func StartsOnLine[T any](tb testing.TB) {
	tb.Helper()
	keep := make([]*T, 16)
	for i := range keep {
		keep[i] = new(T)
		if a := uintptr(unsafe.Pointer(keep[i])); a%CacheLine != 0 {
			var v T
			tb.Fatalf("a %T (%d bytes) starts at %#x, not on a cache line: keep its size a multiple of %d", v, unsafe.Sizeof(v), a, CacheLine)
		}
	}
}
