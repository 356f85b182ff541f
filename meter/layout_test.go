package meter

import (
	"testing"
	"unsafe"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// A request's Reserve, Settle and State read only the share's first two
// cache lines (issue 13: with 100,000 customers in a period, each line is
// a read from memory): the fields they read end within 128 bytes, and
// shares start on a line.
func TestShareRequestFieldsInTwoLines(t *testing.T) {
	var s Share
	end := testrig.FieldEnd
	testrig.WithinLines(t, "Share", 2, map[string]uintptr{
		"mu":         end(unsafe.Offsetof(s.mu), unsafe.Sizeof(s.mu)),
		"q":          end(unsafe.Offsetof(s.q), unsafe.Sizeof(s.q)),
		"limit":      end(unsafe.Offsetof(s.limit), unsafe.Sizeof(s.limit)),
		"avail":      end(unsafe.Offsetof(s.avail), unsafe.Sizeof(s.avail)),
		"inflight":   end(unsafe.Offsetof(s.inflight), unsafe.Sizeof(s.inflight)),
		"validUntil": end(unsafe.Offsetof(s.validUntil), unsafe.Sizeof(s.validUntil)),
		"consumed":   end(unsafe.Offsetof(s.consumed), unsafe.Sizeof(s.consumed)),
		"free":       end(unsafe.Offsetof(s.free), unsafe.Sizeof(s.free)),
		"waiting":    end(unsafe.Offsetof(s.waiting), unsafe.Sizeof(s.waiting)),
		"overruns":   end(unsafe.Offsetof(s.overruns), unsafe.Sizeof(s.overruns)),
		"endNano":    end(unsafe.Offsetof(s.endNano), unsafe.Sizeof(s.endNano)),
		"window":     end(unsafe.Offsetof(s.window), unsafe.Sizeof(s.window)),
		"touched":    end(unsafe.Offsetof(s.touched), unsafe.Sizeof(s.touched)),
		"handBack":   end(unsafe.Offsetof(s.handBack), unsafe.Sizeof(s.handBack)),
		"evicted":    end(unsafe.Offsetof(s.evicted), unsafe.Sizeof(s.evicted)),
		"busy":       end(unsafe.Offsetof(s.busy), unsafe.Sizeof(s.busy)),
		"gen":        end(unsafe.Offsetof(s.gen), unsafe.Sizeof(s.gen)),
	})
	testrig.StartsOnLine[Share](t)
}
