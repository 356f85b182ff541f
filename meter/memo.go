package meter

import "sync/atomic"

// Memo keeps what one customer's requests reserve from and count into,
// from one request to the next (issue 13: with 100,000 customers, looking
// the share and the counter up in their maps was half the request path's
// time): the customer's quota share (Claim.Memo) and the counter of its
// current window (Meter.CountMemo). Each is checked before it is used: the
// share against the claim's customer, meter and period and for eviction,
// under its lock; the counter against the customer, meter and window and
// for being dropped by the flusher, under its shard's lock. A request with
// a memo therefore reserves and counts exactly as one without, and a memo
// only ever holds one share and one counter: a customer whose requests
// alternate between meters looks them up as if it had none.
//
// A Memo must only ever be used for one customer, one Quotas and one
// Meter. The zero Memo is empty.
type Memo struct {
	share   atomic.Pointer[Share]
	counter atomic.Pointer[counter]
}
