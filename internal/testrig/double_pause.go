package testrig

import (
	"net/url"
	"strconv"
)

// pauseBehaviors are the values Stripe takes for pause_collection[behavior].
var pauseBehaviors = []string{"keep_as_draft", "mark_uncollectible", "void"}

// setPauseCollection applies an update's pause_collection to subscription
// m, as Stripe does: pause_collection="" resumes collection (null);
// pause_collection[behavior] (required) with an optional
// pause_collection[resumes_at] in the future pauses it. The subscription's
// status does not change: only its invoices are held back.
func setPauseCollection(m map[string]any, f url.Values, now int64) *Response {
	if !hasParam(f, "pause_collection") {
		return nil
	}
	if f.Has("pause_collection") {
		if v := f.Get("pause_collection"); v != "" {
			return badRequest("Invalid pause_collection: must be an object or an empty string to unset it", "pause_collection")
		}
		m["pause_collection"] = nil
		return nil
	}
	behavior := f.Get("pause_collection[behavior]")
	if behavior == "" {
		return missingParam("pause_collection[behavior]")
	}
	if resp := checkValue(behavior, "pause_collection[behavior]", pauseBehaviors...); resp != nil {
		return resp
	}
	pc := map[string]any{"behavior": behavior, "resumes_at": nil}
	if s := f.Get("pause_collection[resumes_at]"); s != "" {
		at, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return invalidInteger("pause_collection[resumes_at]", s)
		}
		if at <= now {
			return badRequest("pause_collection[resumes_at] must be in the future.", "pause_collection[resumes_at]")
		}
		pc["resumes_at"] = at
	}
	m["pause_collection"] = pc
	return nil
}

// resumeDueCollection clears a pause whose resumes_at has passed: Stripe
// resumes collection by itself then.
func resumeDueCollection(m map[string]any, now int64) {
	pc, ok := m["pause_collection"].(map[string]any)
	if !ok {
		return
	}
	if at := num(pc["resumes_at"]); at != 0 && at <= now {
		m["pause_collection"] = nil
	}
}
