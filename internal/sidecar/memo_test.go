package sidecar

import (
	"sync"
	"testing"

	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// An identity's memo record is made once, however many requests race to
// make it, with both its parts (issue 13).
func TestMemoOfIsMadeOnceForTheCustomer(t *testing.T) {
	if memoOf("cus_1", nil) != nil {
		t.Fatal("an identity without a memo has a memo record")
	}
	var am auth.Memo
	const racers = 8
	got := make([]*customerMemo, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() { got[i] = memoOf("cus_1", &am) })
	}
	wg.Wait()
	for i, c := range got {
		if c == nil || c != got[0] {
			t.Fatalf("racer %d got memo record %p; want the one record %p", i, c, got[0])
		}
	}
	if got[0].gate() == nil || got[0].meter() == nil || (*customerMemo)(nil).meter() != nil || (*customerMemo)(nil).gate() != nil {
		t.Fatal("a record's parts are nil, or a nil record's are not")
	}
}
