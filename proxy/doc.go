// Package proxy is tollgate's request path: it normalises every request's
// path once at ingress (NormalizePath), strips the reserved X-Tollgate-*
// header namespace from client requests (StripReserved), matches routes
// against the normalised path (Pattern), authenticates, gates and forwards
// the request upstream, and answers denials in the SPEC's JSON shape.
//
// The one normalised path is used for route matching, gating and forwarding,
// so the route that was checked is the resource the application serves.
package proxy
