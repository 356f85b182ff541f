package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// target is what fire and openloop send: one request, as fixed bytes, so
// every proxy under test receives exactly the same ones.
type target struct {
	addr string // host:port to dial
	req  []byte
}

func newTarget(rawURL string, hs headers) (*target, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("url %q: want http://host:port/path", rawURL)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\n", u.RequestURI())
	host := u.Host
	for _, h := range hs {
		if name, v, _ := strings.Cut(h, ":"); strings.EqualFold(strings.TrimSpace(name), "Host") {
			host = strings.TrimSpace(v)
		}
	}
	fmt.Fprintf(&b, "Host: %s\r\n", host)
	for _, h := range hs {
		if name, v, _ := strings.Cut(h, ":"); !strings.EqualFold(strings.TrimSpace(name), "Host") {
			fmt.Fprintf(&b, "%s: %s\r\n", strings.TrimSpace(name), strings.TrimSpace(v))
		}
	}
	b.WriteString("\r\n")
	return &target{addr: u.Host, req: []byte(b.String())}, nil
}

// conn is one keep-alive connection; it redials after an error.
type conn struct {
	t  *target
	c  net.Conn
	br *bufio.Reader
}

// do sends the request once and reads the whole answer; it returns the
// status (0 with an error when the exchange failed).
func (c *conn) do() (int, error) {
	if c.c == nil {
		nc, err := net.DialTimeout("tcp", c.t.addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		c.c, c.br = nc, bufio.NewReaderSize(nc, 16<<10)
	}
	status, err := c.exchange()
	if err != nil {
		c.c.Close()
		c.c = nil
	}
	return status, err
}

func (c *conn) exchange() (int, error) {
	c.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.c.Write(c.t.req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if resp.Close {
		c.c.Close()
		c.c = nil
	}
	return resp.StatusCode, nil
}

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
	}
}
