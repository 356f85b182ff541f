package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// runBare is the baseline: httputil.ReverseProxy, nothing else, with the
// transport tuned for one busy upstream (the default keeps 2 idle
// connections per host, which makes a loaded proxy dial on most requests)
// and a pool of copy buffers as tollgate has (without one, ReverseProxy
// allocates 32 KiB per request, and the baseline would be slower than a
// tuned Go proxy is).
//
// With -headers it also sets the headers tollgate's full path adds, with
// values of the same lengths (the seed's user and customer, the bench
// plan), in the cheapest way net/http allows (shared value slices, no
// allocation): the bare proxy plus what net/http costs to write and read
// them, so that what tollgate spends beyond that is its own work.
func runBare(args []string, _ io.Writer) error {
	fs := newFlags("bare")
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to listen on")
	upstream := fs.String("upstream", "", "upstream base URL (http://127.0.0.1:PORT)")
	headers := fs.Bool("headers", false, "add tollgate's identity, X-Request-Id and RateLimit headers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	up, err := url.Parse(*upstream)
	if err != nil || up.Scheme != "http" || up.Host == "" {
		return fmt.Errorf("-upstream %q: want http://host:port", *upstream)
	}
	ln, err := listenLoopback(*listen)
	if err != nil {
		return err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			if *headers {
				setOutbound(pr.Out.Header)
			}
		},
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		ErrorLog:   log.New(io.Discard, "", 0),
		BufferPool: &buffers{},
	}
	if !*headers {
		return serve(ln, rp)
	}
	// The answer's headers go into the client's answer before ReverseProxy
	// copies the app's into it, as tollgate writes them.
	return serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setAnswer(w.Header())
		rp.ServeHTTP(w, r)
	}))
}

// setOutbound and setAnswer add what tollgate's full path adds on the
// bench's request and its answer (X-Forwarded-* come from SetXForwarded
// above), as plain map assignments of shared values.
func setOutbound(h http.Header) {
	h["X-Request-Id"] = requestID
	h["X-Tollgate-User"] = user
	h["X-Tollgate-Customer"] = customer
	h["X-Tollgate-Plan"] = plan
	h["X-Tollgate-Status"] = status
	h["X-Tollgate-Features"] = features
}

func setAnswer(h http.Header) {
	h["X-Request-Id"] = requestID
	h["Ratelimit-Policy"] = policy
	h["Ratelimit"] = limit
}

var (
	requestID = []string{"0123456789abcdef0123456789abcdef"}
	user      = []string{"user_bench"}
	customer  = []string{"cus_bench"}
	plan      = []string{"bench"}
	status    = []string{"active"}
	features  = []string{"bench"}
	policy    = []string{`"api_calls";q=1000000000000;w=2592000`}
	limit     = []string{`"api_calls";r=999999999999;t=2592000`}
)

// buffers is httputil.BufferPool on a sync.Pool of 32 KiB arrays.
type buffers struct{ p sync.Pool }

const bufferSize = 32 << 10

func (b *buffers) Get() []byte {
	if a, ok := b.p.Get().(*[bufferSize]byte); ok {
		return a[:]
	}
	return make([]byte, bufferSize)
}

func (b *buffers) Put(buf []byte) {
	if len(buf) == bufferSize {
		b.p.Put((*[bufferSize]byte)(buf))
	}
}
