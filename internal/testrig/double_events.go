package testrig

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// maxEventTypes is how many names Stripe's events list takes in types[].
const maxEventTypes = 20

// PutEventJSON stores an event exactly as given (Stripe's event JSON, as
// webhook.NewEvent builds it), for GET /v1/events and /v1/events/{id}:
// the way a test makes an event that Stripe has but whose webhook was
// lost.
func (d *StripeDouble) PutEventJSON(raw []byte) {
	d.tb.Helper()
	var head struct {
		ID      string `json:"id"`
		Created int64  `json:"created"`
		Type    string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.ID == "" || head.Type == "" {
		d.tb.Fatalf("testrig: PutEventJSON: not an event with an id and a type (%v)", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	d.objects.events[head.ID] = storedObject{id: head.ID, status: head.Type, created: head.Created, seq: d.seq,
		raw: append(json.RawMessage(nil), raw...)}
}

// listEvents answers GET /v1/events as Stripe does: newest first, filtered
// by created (an exact time, or created[gt|gte|lt|lte]) and by type (one
// name, "*" a wildcard) or types[] (up to 20 exact names, not with type),
// paged with limit, starting_after and ending_before, has_more set.
func (d *StripeDouble) listEvents(c *Call) *Response {
	created, errResp := parseCreated(c.Form)
	if errResp != nil {
		return errResp
	}
	match, errResp := eventTypeFilter(c.Form)
	if errResp != nil {
		return errResp
	}
	return d.listStored(c, d.objects.events, func(o storedObject) bool {
		typ := o.status
		if typ == "" { // stored by PutEvent
			typ, _ = o.decode()["type"].(string)
		}
		return created(o.created) && match(typ)
	}, "/v1/events", "event")
}

// parseCreated reads Stripe's created filter: created=T, or any of
// created[gt], created[gte], created[lt], created[lte].
func parseCreated(form url.Values) (func(int64) bool, *Response) {
	type bound struct {
		op string
		v  int64
	}
	var bounds []bound
	for _, op := range []string{"", "gt", "gte", "lt", "lte"} {
		key := "created"
		if op != "" {
			key += "[" + op + "]"
		}
		s := form.Get(key)
		if s == "" {
			continue
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, ErrorResponse(http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer",
				"Invalid integer: "+s, key)
		}
		bounds = append(bounds, bound{op, v})
	}
	return func(t int64) bool {
		for _, b := range bounds {
			ok := map[string]bool{"": t == b.v, "gt": t > b.v, "gte": t >= b.v, "lt": t < b.v, "lte": t <= b.v}[b.op]
			if !ok {
				return false
			}
		}
		return true
	}, nil
}

// eventTypeFilter reads type (with * wildcards) or types[] (exact names).
func eventTypeFilter(form url.Values) (func(string) bool, *Response) {
	types := arrayParam(form, "types")
	one := form.Get("type")
	switch {
	case one != "" && len(types) > 0:
		return nil, ErrorResponse(http.StatusBadRequest, "invalid_request_error", "",
			"You may pass either `type` or `types`, but not both.", "types")
	case len(types) > maxEventTypes:
		return nil, ErrorResponse(http.StatusBadRequest, "invalid_request_error", "",
			fmt.Sprintf("You may pass at most %d values for `types` (you passed %d).", maxEventTypes, len(types)), "types")
	case len(types) > 0:
		set := make(map[string]bool, len(types))
		for _, t := range types {
			set[t] = true
		}
		return func(t string) bool { return set[t] }, nil
	case one != "":
		re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(one), `\*`, ".*") + "$")
		return re.MatchString, nil
	}
	return func(string) bool { return true }, nil
}

// arrayParam returns the values of a form-encoded array: name[0]=a&name[1]=b
// (stripe-go's encoding, in index order), name[]=a, or name=a.
func arrayParam(form url.Values, name string) []string {
	type indexed struct {
		i int
		v string
	}
	var idx []indexed
	var out []string
	for k, vs := range form {
		inner, ok := strings.CutPrefix(k, name+"[")
		if !ok || !strings.HasSuffix(inner, "]") {
			continue
		}
		inner = strings.TrimSuffix(inner, "]")
		if inner == "" {
			out = append(out, vs...)
			continue
		}
		if i, err := strconv.Atoi(inner); err == nil && len(vs) > 0 {
			idx = append(idx, indexed{i, vs[0]})
		}
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a].i < idx[b].i })
	for _, x := range idx {
		out = append(out, x.v)
	}
	return append(out, form[name]...)
}
