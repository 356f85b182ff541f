package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

// h2cBackend is an application server that accepts "Upgrade: h2c"
// loosely, as many do: it switches on the Upgrade header alone (no check
// of Connection or HTTP2-Settings), and then serves the connection with a
// real HTTP/2 server (Go's, unencrypted). It also answers 101 to any
// request for /always-101, as a misbehaving app would. It records every
// request it sees: on HTTP/1.1 and inside a tunnel.
type h2cBackend struct {
	ln     net.Listener
	tunnel *http.Server
	addr   string

	mu     sync.Mutex
	open   map[net.Conn]bool
	plain  []*http.Request // HTTP/1.1 requests (headers only)
	inside []string        // "METHOD path" of requests served inside a tunnel
	conns  chan net.Conn   // upgraded connections handed to the HTTP/2 server
	wg     sync.WaitGroup
}

func newH2CBackend(t *testing.T) *h2cBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &h2cBackend{ln: ln, addr: ln.Addr().String(), conns: make(chan net.Conn), open: map[net.Conn]bool{}}
	b.tunnel = &http.Server{Protocols: new(http.Protocols), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.inside = append(b.inside, r.Method+" "+r.URL.Path)
		b.mu.Unlock()
		io.WriteString(w, "inside the tunnel")
	})}
	b.tunnel.Protocols.SetUnencryptedHTTP2(true)
	tl := &chanListener{conns: b.conns, done: make(chan struct{}), addr: ln.Addr()}
	b.wg.Add(2)
	go func() { defer b.wg.Done(); b.tunnel.Serve(tl) }()
	go func() { defer b.wg.Done(); b.accept() }()
	t.Cleanup(func() {
		ln.Close()
		b.tunnel.Close()
		b.mu.Lock()
		for c := range b.open {
			c.Close() // tollgate's idle keep-alive connections
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *h2cBackend) accept() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go func() { defer b.wg.Done(); b.serve(c) }()
	}
}

func (b *h2cBackend) serve(c net.Conn) {
	b.mu.Lock()
	b.open[c] = true
	b.mu.Unlock()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			c.Close()
			return
		}
		io.Copy(io.Discard, req.Body)
		b.mu.Lock()
		b.plain = append(b.plain, req)
		b.mu.Unlock()
		if strings.Contains(strings.ToLower(req.Header.Get("Upgrade")), "h2c") || req.URL.Path == "/always-101" {
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
			select {
			case b.conns <- &bufConn{Conn: c, r: br}:
			case <-time.After(10 * time.Second):
				c.Close()
			}
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain")
	}
}

func (b *h2cBackend) seen() (plain []*http.Request, inside []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*http.Request(nil), b.plain...), append([]string(nil), b.inside...)
}

// chanListener hands the HTTP/2 server the connections the backend
// upgraded.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

// bufConn reads what a bufio.Reader already buffered before the rest of
// the connection.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// tryTunnel is the attacker's second step: speak HTTP/2 on the connection
// as if the upgrade had succeeded, asking for a path no route allows
// anonymously. It reports whether an answer came back from inside.
func tryTunnel(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tr := &http.Transport{Protocols: new(http.Protocols),
		DialContext: func(context.Context, string, string) (net.Conn, error) { return c, nil }}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://app.example/admin/secret")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body) == "inside the tunnel"
}

// h2c upgrade smuggling (Bishop Fox, 2020): ReverseProxy restores Upgrade
// after removing hop-by-hop headers, so "Upgrade: h2c" reached the app and
// every request inside the tunnel skipped routes, auth and gating.
func TestH2CUpgradeNeverReachesTheApp(t *testing.T) {
	b := newH2CBackend(t)
	rig := newProxy(t, func(c *config.Config, _ *Options) {
		c.Upstream = "http://" + b.addr
		c.Routes = guardedRoutes
	}, nil)
	addr := rig.front.Listener.Addr().String()
	for _, c := range []struct {
		name    string
		headers []string
	}{
		{"RFC 7540 form", []string{"Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"}},
		{"settings not listed in Connection", []string{"Connection: Upgrade", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"}},
		{"upper case", []string{"Connection: UPGRADE", "Upgrade: H2C", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"}},
		{"behind an allowed token", []string{"Connection: upgrade", "Upgrade: websocket, h2c", "Sec-WebSocket-Version: 13"}},
		{"with a version", []string{"Connection: Upgrade", "Upgrade: h2c/1"}},
		{"two Upgrade lines", []string{"Connection: Upgrade", "Upgrade: h2c", "Upgrade: websocket"}},
		{"settings without an Upgrade", []string{"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"}},
		{"settings in lower case, without an Upgrade", []string{"Connection: http2-settings", "http2-settings: AAMAAABkAARAAAAAAAIAAAAA"}},
		{"upgrade in lower case", []string{"connection: upgrade", "upgrade: h2c"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, _ := b.seen()
			resp, conn := askToSwitch(t, addr, "/public/x", c.headers)
			if resp.StatusCode == http.StatusSwitchingProtocols {
				t.Errorf("client got 101: the connection was switched to h2c")
			}
			if tryTunnel(t, conn) {
				t.Errorf("a request inside the tunnel reached the app")
			}
			plain, inside := b.seen()
			if len(inside) > 0 {
				t.Errorf("the app served %v inside an h2c tunnel; want nothing", inside)
			}
			if len(plain) != len(before)+1 {
				t.Fatalf("the app saw %d HTTP/1.1 requests; want the one", len(plain)-len(before))
			}
			h := plain[len(plain)-1].Header
			if up := h.Get("Upgrade"); strings.Contains(strings.ToLower(up), "h2c") {
				t.Errorf("app saw Upgrade %q; want no h2c", up)
			}
			if v := h.Get("Http2-Settings"); v != "" {
				t.Errorf("app saw HTTP2-Settings %q; want it removed", v)
			}
		})
	}
}

// Unrequested protocol switch: an upstream that answers 101 to a request
// that asked for no (allowed) protocol would open a tunnel tollgate never
// judged; the client gets 502 and nothing passes.
func TestUnrequestedSwitchIsRefused(t *testing.T) {
	b := newH2CBackend(t)
	rig := newProxy(t, func(c *config.Config, _ *Options) {
		c.Upstream = "http://" + b.addr
		c.Routes = guardedRoutes
	}, nil)
	for _, c := range []struct {
		name    string
		path    string
		headers []string
	}{
		{"no upgrade asked", "/always-101", nil},
		{"websocket asked, h2c given", "/always-101", []string{"Connection: Upgrade", "Upgrade: websocket"}},
		{"h2c asked (stripped), h2c given", "/always-101", []string{"Connection: Upgrade", "Upgrade: h2c"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, conn := askToSwitch(t, rig.front.Listener.Addr().String(), c.path, c.headers)
			if resp.StatusCode != http.StatusBadGateway || errorCode(t, resp) != "upgrade_refused" {
				t.Errorf("status = %d; want 502 upgrade_refused", resp.StatusCode)
			}
			if tryTunnel(t, conn) {
				t.Errorf("a request inside the tunnel reached the app")
			}
			if _, inside := b.seen(); len(inside) > 0 {
				t.Errorf("the app served %v inside a tunnel; want nothing", inside)
			}
		})
	}
}

// askToSwitch sends one GET with headers on a new connection and reads
// the answer; the connection (with what was read past the answer) is the
// attacker's for the next step.
func askToSwitch(t *testing.T, addr, path string, headers []string) (*http.Response, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: app.example\r\n", path)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	io.WriteString(conn, b.String())
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return resp, &bufConn{Conn: conn, r: br}
}

// proxy.upgrades decides which protocols pass: the default passes
// WebSocket (any case), [] passes none, and another listed token passes.
func TestUpgradeAllowlist(t *testing.T) {
	for _, c := range []struct {
		name     string
		upgrades []string // nil: the default
		send     string
		want     string // Upgrade the app sees
		wantConn string // Connection the app sees
	}{
		{"default websocket", nil, "websocket", "websocket", "Upgrade"},
		{"default WebSocket any case", nil, "WebSocket", "WebSocket", "Upgrade"},
		{"none allowed", []string{}, "websocket", "", ""},
		{"other token allowed", []string{"websocket", "foo"}, "foo/2", "foo/2", "Upgrade"},
		{"only the allowed of two", []string{"foo"}, "bar, foo", "foo", "Upgrade"},
		{"versioned entry is exact", []string{"foo/2"}, "foo/3", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rig := newProxy(t, func(cfg *config.Config, _ *Options) {
				if c.upgrades != nil {
					cfg.Proxy.Upgrades = c.upgrades
				}
			}, func(w http.ResponseWriter, r *http.Request) {}) // a plain 200: no switch
			resp := rawRequest(t, rig.front.Listener.Addr().String(), "GET", "/public/x", "Upgrade: "+c.send, "Connection: upgrade, keep-alive")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			h := rig.backend.requests()[0].Header
			if got := h.Get("Upgrade"); got != c.want {
				t.Errorf("app saw Upgrade %q; want %q", got, c.want)
			}
			if got := h.Get("Connection"); got != c.wantConn {
				t.Errorf("app saw Connection %q; want %q", got, c.wantConn)
			}
		})
	}
}

func TestUpgradesFilter(t *testing.T) {
	u := newUpgrades([]string{"WebSocket", "foo/2"})
	for _, c := range []struct {
		in, want string
	}{
		{"websocket", "websocket"},
		{"h2c", ""},
		{"h2c, websocket", "websocket"},
		{" websocket ,, foo/2", "websocket, foo/2"},
		{"foo", ""},
		{"foo/2", "foo/2"},
		{"websocket/13", "websocket/13"},
	} {
		h := http.Header{"Upgrade": {c.in}, "Connection": {"Upgrade"}, "Http2-Settings": {"x"}}
		u.filter(h, sawUpgrade|sawHTTP2Settings)
		if got := h.Get("Upgrade"); got != c.want {
			t.Errorf("filter(Upgrade: %q) = %q; want %q", c.in, got, c.want)
		}
		if h.Get("Http2-Settings") != "" {
			t.Errorf("filter(%q) kept HTTP2-Settings", c.in)
		}
		if wantConn := c.want != ""; (h.Get("Connection") != "") != wantConn {
			t.Errorf("filter(%q): Connection = %q; want it only with an upgrade left", c.in, h.Get("Connection"))
		}
	}
}

func TestCheckSwitch(t *testing.T) {
	for _, c := range []struct {
		name    string
		status  int
		upgrade []string
		kept    []string
		ok      bool
	}{
		{"not a switch", 200, []string{"h2c"}, nil, true},
		{"allowed", 101, []string{"websocket"}, []string{"websocket"}, true},
		{"case", 101, []string{"WebSocket"}, []string{"websocket"}, true},
		{"nothing asked", 101, []string{"websocket"}, nil, false},
		{"other protocol", 101, []string{"h2c"}, []string{"websocket"}, false},
		{"no Upgrade header", 101, nil, []string{"websocket"}, false},
		{"two at once", 101, []string{"websocket, h2c"}, []string{"websocket"}, false},
	} {
		resp := &http.Response{StatusCode: c.status, Header: http.Header{}}
		if c.upgrade != nil {
			resp.Header["Upgrade"] = c.upgrade
		}
		err := checkSwitch(resp, c.kept)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, errSwitchRefused)) {
			t.Errorf("%s: checkSwitch = %v; want ok=%v", c.name, err, c.ok)
		}
	}
}
