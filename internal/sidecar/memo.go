package sidecar

import (
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// customerMemo is what the sidecar keeps in an identity's auth.Memo: the
// customer's entitlement cache entry, quota share and usage counter, so
// that a request skips the three lookups while they are current (issue
// 13). Each package checks its own part before using it; see
// entitlements.Gate.DecideMemo and meter.Memo.
type customerMemo struct {
	g entitlements.Memo
	m meter.Memo
}

// memoOf is the customer memo in m, an identity's auth.Memo, made on first
// use; nil for a nil m (an identity without a customer). An auth.Memo
// always comes with the same customer, whose memo this is.
func memoOf(customer string, m *auth.Memo) *customerMemo {
	v := m.Slot()
	if v == nil {
		return nil
	}
	if c, _ := v.Load().(*customerMemo); c != nil {
		return c
	}
	c := new(customerMemo)
	c.m.Init(customer)
	if v.CompareAndSwap(nil, c) {
		return c
	}
	return v.Load().(*customerMemo)
}

// gate is the entitlements part; nil without a memo.
func (c *customerMemo) gate() *entitlements.Memo {
	if c == nil {
		return nil
	}
	return &c.g
}

// meter is the quota and usage part; nil without a memo.
func (c *customerMemo) meter() *meter.Memo {
	if c == nil {
		return nil
	}
	return &c.m
}
