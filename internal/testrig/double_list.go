package testrig

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Stripe list limits.
const (
	defaultListLimit = 10
	maxListLimit     = 100
)

// storedObject is an object as the test put it, kept as JSON so later
// changes to the test's struct do not race with requests.
type storedObject struct {
	id       string
	customer string // owning customer, where there is one
	status   string
	created  int64
	seq      int64 // insertion order, breaks ties in created
	raw      json.RawMessage
}

// decode returns a fresh map of the object's JSON.
func (o storedObject) decode() map[string]any {
	var m map[string]any
	if err := json.Unmarshal(o.raw, &m); err != nil {
		panic("testrig: stored object is not a JSON object: " + err.Error())
	}
	return m
}

// encodeObject encodes v as a JSON object and sets its "object" field when
// the test left it empty.
func encodeObject(v any, object string) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if s, _ := m["object"].(string); s == "" {
		m["object"] = object
	}
	return json.Marshal(m)
}

// decodeAs decodes a stored object's JSON into a stripe-go type, failing
// the test if it does not fit (the double stored something Stripe never
// answers).
func decodeAs[T any](tb testing.TB, raw []byte, noun, id string) *T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		tb.Fatalf("testrig: decode %s %s: %v", noun, id, err)
	}
	return &v
}

// storedAs returns the object of id in objects (a map of the double's
// state), decoded into a stripe-go type.
func storedAs[T any](d *StripeDouble, objects map[string]storedObject, noun, id string) (*T, bool) {
	d.mu.Lock()
	o, ok := objects[id]
	d.mu.Unlock()
	if !ok {
		return nil, false
	}
	return decodeAs[T](d.tb, o.raw, noun, id), true
}

// sortNewestFirst orders objects as Stripe lists them: newest first.
func sortNewestFirst(objs []storedObject) {
	sort.Slice(objs, func(i, j int) bool {
		if objs[i].created != objs[j].created {
			return objs[i].created > objs[j].created
		}
		return objs[i].seq > objs[j].seq
	})
}

// listPage is one page of a list endpoint: the items with limit,
// starting_after and ending_before applied, in Stripe's list envelope.
func listPage(items []map[string]any, form url.Values, path, noun string) *Response {
	limit := defaultListLimit
	if s := form.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer", "Invalid integer: "+s, "limit")
		}
		if n < 1 || n > maxListLimit {
			return ErrorResponse(http.StatusBadRequest, "invalid_request_error", "", fmt.Sprintf("This value must be between 1 and %d (it currently is %d).", maxListLimit, n), "limit")
		}
		limit = n
	}
	lo, hi := 0, len(items)
	if after := form.Get("starting_after"); after != "" {
		i := indexOfID(items, after)
		if i < 0 {
			return notFound(noun, after, "starting_after")
		}
		lo = i + 1
		hi = min(lo+limit, len(items))
	} else if before := form.Get("ending_before"); before != "" {
		i := indexOfID(items, before)
		if i < 0 {
			return notFound(noun, before, "ending_before")
		}
		hi = i
		lo = max(0, hi-limit)
	} else {
		hi = min(limit, len(items))
	}
	hasMore := hi < len(items)
	if form.Get("ending_before") != "" {
		hasMore = lo > 0
	}
	data := items[lo:hi]
	if data == nil {
		data = []map[string]any{}
	}
	return JSONResponse(http.StatusOK, map[string]any{
		"object":   "list",
		"data":     data,
		"has_more": hasMore,
		"url":      path,
	})
}

func indexOfID(items []map[string]any, id string) int {
	for i, it := range items {
		if it["id"] == id {
			return i
		}
	}
	return -1
}

// expansions returns the expand[] paths of a request; on list endpoints
// Stripe spells them "data.field", which is trimmed to "field".
func expansions(form url.Values) map[string]bool {
	out := make(map[string]bool)
	for k, vs := range form {
		if k != "expand" && !strings.HasPrefix(k, "expand[") {
			continue
		}
		for _, v := range vs {
			out[strings.TrimPrefix(v, "data.")] = true
		}
	}
	return out
}

// collapse replaces each expandable field that holds an object with the
// object's id, as Stripe answers unless the field is expanded.
func collapse(m map[string]any, expand map[string]bool, fields ...string) {
	for _, f := range fields {
		if expand[f] {
			continue
		}
		if obj, ok := m[f].(map[string]any); ok {
			if id, ok := obj["id"].(string); ok && id != "" {
				m[f] = id
			}
		}
	}
}

// listStored answers a list endpoint over the stored objects keep selects:
// newest first, decoded, paged as listPage does. keep runs under the
// double's lock.
func (d *StripeDouble) listStored(c *Call, objects map[string]storedObject, keep func(storedObject) bool, path, noun string) *Response {
	d.mu.Lock()
	var objs []storedObject
	for _, o := range objects {
		if keep(o) {
			objs = append(objs, o)
		}
	}
	d.mu.Unlock()
	sortNewestFirst(objs)
	items := make([]map[string]any, len(objs))
	for i, o := range objs {
		items[i] = o.decode()
	}
	return listPage(items, c.Form, path, noun)
}
