package meter

import "sync/atomic"

// Memo keeps what one customer's requests reserve from and count into,
// from one request to the next (issue 13: with 100,000 customers, looking
// the share and the counter up in their maps was half the request path's
// time): the customer's quota share (Claim.Memo) and the counter of its
// current window (Meter.CountMemo). A memo is for the one customer Init
// names, and is used only for a claim or a count of that customer; each
// thing it keeps is checked before it is used: the share against the
// claim's meter and period and for eviction, under its lock; the counter
// against the count's meter and window and for being dropped by the
// flusher, under its shard's lock. A request with a memo therefore
// reserves and counts exactly as one without, and a memo only ever holds
// one share and one counter: a customer whose requests alternate between
// meters looks them up as if it had none.
//
// A Memo must only ever be used with one Quotas and one Meter. The zero
// Memo is for no customer and is never used; Init it before sharing it.
type Memo struct {
	// customer is whose memo it is (Init). Comparing a request's customer
	// with it, rather than with the customer in a share's or a counter's
	// key, compares a string with itself on the request path (both are the
	// string of one link answer), so no customer id is read from memory.
	customer string
	share    atomic.Pointer[Share]
	counter  atomic.Pointer[counter]
}

// Init makes m the memo of customer. Call it once, before m is shared.
func (m *Memo) Init(customer string) { m.customer = customer }

// of is m when it is customer's memo, else nil: what a claim or a count
// of customer may read from and keep in.
func (m *Memo) of(customer string) *Memo {
	if m == nil || m.customer != customer {
		return nil
	}
	return m
}
