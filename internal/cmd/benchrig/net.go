package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
)

// listenLoopback listens on addr, which must be a loopback address: the
// benchmark never opens a port to the network.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", addr, err)
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("listen %q: not a loopback address", addr)
	}
	return net.Listen("tcp", addr)
}

// runPorts prints -n free loopback ports, one a line, for the processes
// the script configures by port (nginx, HAProxy, Caddy, tollgate).
func runPorts(args []string, stdout io.Writer) error {
	fs := newFlags("ports")
	n := fs.Int("n", 1, "how many ports")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 100 {
		return fmt.Errorf("-n must be 1..100")
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range *n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		fmt.Fprintln(stdout, ln.Addr().(*net.TCPAddr).Port)
	}
	return nil
}
