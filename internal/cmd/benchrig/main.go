// Command benchrig holds the parts of the side-by-side benchmark
// (scripts/bench-compare.sh, docs/performance.md) that Debian does not
// package: the upstream every target proxies to, the bare
// httputil.ReverseProxy tollgate is measured against, a local RS256 JWKS
// issuer, the seeding of a subscribed customer, a fixed-count request
// sender for callgrind, and an open-loop load generator. It listens on
// loopback only and is not part of the tollgate binary.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

type command struct {
	name, help string
	run        func(args []string, stdout io.Writer) error
}

var commands = []command{
	{"upstream", "serve a 100-byte answer to every request", runUpstream},
	{"bare", "a bare httputil.ReverseProxy with a tuned transport", runBare},
	{"issuer", "serve an RS256 JWKS and write a token signed by its key", runIssuer},
	{"seed", "store a subscribed customer and link a user to it", runSeed},
	{"fire", "send exactly -n requests over -c keep-alive connections", runFire},
	{"ports", "print free loopback ports", runPorts},
	{"report", "print the tables of the script's measurements", runReport},
	{"openloop", "send at a fixed rate; latency from each request's scheduled time", runOpenLoop},
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "benchrig:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return fmt.Errorf("no command")
		}
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdout)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: benchrig COMMAND [flags]   (COMMAND -h for its flags)")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.help)
	}
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("benchrig "+name, flag.ContinueOnError)
	return fs
}

// headers is a repeatable -H "Name: value" flag.
type headers []string

func (h *headers) String() string { return strings.Join(*h, ", ") }

func (h *headers) Set(v string) error {
	name, _, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("header %q: want \"Name: value\"", v)
	}
	*h = append(*h, v)
	return nil
}
