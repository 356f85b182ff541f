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
func runBare(args []string, _ io.Writer) error {
	fs := newFlags("bare")
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to listen on")
	upstream := fs.String("upstream", "", "upstream base URL (http://127.0.0.1:PORT)")
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
	return serve(ln, rp)
}

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
