package proxy

import (
	"net/http"
	"strings"
)

var errMethodNotAllowed = &HTTPError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
	Msg: "CONNECT and TRACE are not allowed here."}

// defaultMethods is what Allow lists for a route without methods.
var defaultMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// listedOnly reports the methods that reach the app only on a route that
// lists them: CONNECT asks the app to open a tunnel nothing inside of
// which is judged, and TRACE echoes the request back, cookies and
// Authorization included (cross-site tracing).
func listedOnly(method string) bool {
	return method == http.MethodConnect || method == http.MethodTrace
}

// checkListedOnly answers 405 to CONNECT or TRACE unless a route lists it
// for the path; an authority-form CONNECT (no path) is never routed. The
// answer's Allow names what tollgate's routes forward for the path (the
// app may support fewer).
func (s *Server) checkListedOnly(w http.ResponseWriter, method, p string, pathErr error) *HTTPError {
	if !listedOnly(method) || (pathErr == nil && s.match(method, p) != nil) {
		return nil
	}
	allow := ""
	if pathErr == nil {
		allow = strings.Join(s.allowedMethods(p), ", ")
	}
	w.Header().Set("Allow", allow)
	return errMethodNotAllowed
}

// allowedMethods is every method some route forwards for p, in route
// order, without CONNECT or TRACE (which reach this only when no route
// lists them for p).
func (s *Server) allowedMethods(p string) []string {
	var out []string
	add := func(m string) {
		for _, x := range out {
			if x == m {
				return
			}
		}
		out = append(out, m)
	}
	for i := range s.routes {
		rt := &s.routes[i]
		if !rt.pattern.Match(p) {
			continue
		}
		ms := rt.methods
		if len(ms) == 0 {
			ms = defaultMethods
		}
		for _, m := range ms {
			if listedOnly(m) {
				continue
			}
			add(m)
			if m == http.MethodGet {
				add(http.MethodHead)
			}
		}
	}
	return out
}
