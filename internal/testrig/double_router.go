package testrig

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HandlerFunc answers one call to a double endpoint. It runs without the
// double's lock held, so it may call the double's exported methods.
type HandlerFunc func(c *Call) *Response

// Call is a request matched to an endpoint.
type Call struct {
	Request *http.Request
	Form    url.Values // query and form body together
	params  map[string]string
}

// Param returns the path segment matched by {name} in the route pattern.
func (c *Call) Param(name string) string { return c.params[name] }

// Response is an endpoint's answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte // JSON
}

// JSONResponse answers status with v encoded as JSON.
func JSONResponse(status int, v any) *Response {
	b, err := json.Marshal(v)
	if err != nil {
		return ErrorResponse(http.StatusInternalServerError, "api_error", "", "testrig: encode response: "+err.Error(), "")
	}
	return &Response{Status: status, Header: make(http.Header), Body: b}
}

// ErrorResponse answers status with Stripe's error shape. Empty code and
// param are left out, as Stripe does.
func ErrorResponse(status int, typ, code, message, param string) *Response {
	e := map[string]string{"type": typ, "message": message}
	if code != "" {
		e["code"] = code
		e["doc_url"] = "https://stripe.com/docs/error-codes/" + strings.ReplaceAll(code, "_", "-")
	}
	if param != "" {
		e["param"] = param
	}
	return JSONResponse(status, map[string]any{"error": e})
}

// notFound is Stripe's answer for an object that does not exist.
func notFound(noun, id, param string) *Response {
	return ErrorResponse(http.StatusNotFound, "invalid_request_error", "resource_missing",
		fmt.Sprintf("No such %s: '%s'", noun, id), param)
}

func (r *Response) clone() *Response {
	return &Response{Status: r.Status, Header: r.Header.Clone(), Body: append([]byte(nil), r.Body...)}
}

// write sends the response with the headers Stripe puts on every answer.
func (r *Response) write(w http.ResponseWriter, req *http.Request) {
	h := w.Header()
	for k, vs := range r.Header {
		h[k] = vs
	}
	h.Set("Content-Type", "application/json")
	if h.Get("Request-Id") == "" {
		h.Set("Request-Id", "req_testrig"+strconv.FormatInt(time.Now().UnixNano(), 36))
	}
	version := req.Header.Get("Stripe-Version")
	if version == "" {
		version = stripeAPIVersion
	}
	h.Set("Stripe-Version", version)
	if key := req.Header.Get("Idempotency-Key"); key != "" {
		h.Set("Idempotency-Key", key)
	}
	w.WriteHeader(r.Status)
	_, _ = w.Write(r.Body)
}

// route is one endpoint: a method and a path pattern whose {name} segments
// match any single non-empty segment.
type route struct {
	method string
	segs   []string
	h      HandlerFunc
}

// Handle adds an endpoint, e.g. Handle("GET /v1/invoices/{id}", h). A later
// registration that matches a request wins over an earlier one, so a test
// can also override a built-in endpoint.
func (d *StripeDouble) Handle(pattern string, h HandlerFunc) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok || !strings.HasPrefix(path, "/") {
		d.tb.Fatalf("testrig: Handle(%q): want \"METHOD /path\"", pattern)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.routes = append(d.routes, route{method: method, segs: strings.Split(path, "/"), h: h})
}

// dispatch finds the endpoint for r and runs it; unknown URLs get Stripe's
// 404.
func (d *StripeDouble) dispatch(r *http.Request) *Response {
	segs := strings.Split(r.URL.Path, "/")
	d.mu.Lock()
	routes := d.routes
	d.mu.Unlock()
	for i := len(routes) - 1; i >= 0; i-- {
		rt := routes[i]
		if rt.method != r.Method {
			continue
		}
		if params, ok := match(rt.segs, segs); ok {
			return rt.h(&Call{Request: r, Form: r.Form, params: params})
		}
	}
	return ErrorResponse(http.StatusNotFound, "invalid_request_error", "resource_missing",
		fmt.Sprintf("Unrecognized request URL (%s: %s). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.", r.Method, r.URL.Path), "")
}

func match(pattern, segs []string) (map[string]string, bool) {
	if len(pattern) != len(segs) {
		return nil, false
	}
	params := make(map[string]string)
	for i, p := range pattern {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
			if segs[i] == "" {
				return nil, false
			}
			params[p[1:len(p)-1]] = segs[i]
		} else if p != segs[i] {
			return nil, false
		}
	}
	return params, true
}
