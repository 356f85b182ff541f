package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// answer is the upstream's body: 100 bytes, as in issue 13's method.
var answer = append(bytes.Repeat([]byte("tollgate-bench "), 7)[:99:99], '\n')

func runUpstream(args []string, _ io.Writer) error {
	fs := newFlags("upstream")
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := listenLoopback(*listen)
	if err != nil {
		return err
	}
	size := strconv.Itoa(len(answer))
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
		w.Header()["Content-Length"] = []string{size}
		w.Write(answer)
	})
	return serve(ln, h)
}

// serve runs an HTTP/1.1 server with bounded header reads until it fails.
func serve(ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	return srv.Serve(ln)
}
