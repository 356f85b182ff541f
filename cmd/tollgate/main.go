// Command tollgate is the entitlements sidecar: it authenticates every
// request, gates it on the caller's Stripe subscription, forwards it to the
// application and meters usage for Stripe billing.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/gcgoal"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/sidecar"
	"github.com/tollgate-dev/tollgate/internal/store"
)

// Set by the linker: -ldflags "-X main.version=v0.1.0 -X main.commit=abc".
var (
	version = "dev"
	commit  = ""
)

const usage = `tollgate: an entitlements sidecar for products billed with Stripe.

Usage:
  tollgate serve   -config FILE   run the sidecar
  tollgate check   -config FILE   validate a config; every problem with its field path; exit 1 if any
  tollgate sync    -config FILE   reconcile every customer's state from Stripe now
  tollgate demo                   run everything on an embedded default, and print curl commands to try
  tollgate usage   -config FILE [-json]   print counted, pending, reported and parked usage per customer and meter
  tollgate usage   -config FILE -reconcile [-period current|previous] [-json]
                                  compare counted and reported usage with Stripe's meter event summaries; exit 1 on drift
  tollgate events  -config FILE [-customer cus_...] [-type T] [-failed] [-since D] [-limit N] [-json]
                                  recent webhook deliveries and what each did, and grant changes
  tollgate replay  -config FILE -since D [-dry-run] [-json]
                                  apply every handled event in Stripe's events list that the ledger has not taken
  tollgate link    -config FILE -user ID [-customer cus_... | -unlink]
                                  show or repair which Stripe customer a user belongs to
  tollgate grant   -config FILE -customer cus_... [-features a,b] [-limits m=N] [-plan P] [-until T] -reason R
  tollgate grant   -config FILE -list | -revoke gr_... | -audit [-customer cus_...] [-json]
                                  operator overrides: add features, raise limits, entitle a plan (audited)
  tollgate trigger EVENT [-config FILE] [-url URL] [-customer cus_...] [-price price_...] [-user ID]
                                  sign a realistic Stripe event and post it to a running tollgate
  tollgate version                print version, commit and Go version

tollgate CMD -h (or tollgate help CMD) prints a command's flags and examples.
`

func main() {
	// SIGTERM (Kubernetes) and Ctrl-C start a graceful shutdown.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stdout, stderr)
	case "check":
		return check(rest, stdout, stderr)
	case "sync":
		return syncCmd(ctx, rest, stdout, stderr)
	case "demo":
		return demo(ctx, rest, stdout, stderr)
	case "usage":
		return usageCmd(ctx, rest, stdout, stderr)
	case "trigger":
		return triggerCmd(ctx, rest, stdout, stderr)
	case "link":
		return linkCmd(ctx, rest, stdout, stderr)
	case "events":
		return eventsCmd(ctx, rest, stdout, stderr)
	case "replay":
		return replayCmd(ctx, rest, stdout, stderr)
	case "grant":
		return grantCmd(ctx, rest, stdout, stderr)
	case "version", "-version", "--version":
		if code, ok := parse(newFlags("version"), rest, stdout, stderr); !ok {
			return code
		}
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "-help", "--help":
		if len(rest) == 1 && knownCommand(rest[0]) {
			// tollgate help CMD is tollgate CMD -h.
			return run(ctx, []string{rest[0], "-h"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "tollgate: unknown command %q\n\n%s", cmd, usage)
	return 2
}

// knownCommand reports whether name is a subcommand.
func knownCommand(name string) bool {
	switch name {
	case "serve", "check", "sync", "demo", "usage", "trigger", "link", "events", "replay", "grant", "version":
		return true
	}
	return false
}

func versionString() string {
	c := commit
	if c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("tollgate %s (commit %s, %s %s/%s)", version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// configFlag parses a command whose only flag is -config. code is the
// exit code when ok is false: 0 after -h, 2 on a bad command line.
func configFlag(name string, args []string, stdout, stderr io.Writer) (path string, code int, ok bool) {
	fs := newFlags(name)
	p := fs.String("config", "", "path to the YAML configuration file (required)")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return "", code, false
	}
	if *p == "" {
		return "", usageError(stderr, fs, "-config FILE is required"), false
	}
	if fs.NArg() > 0 {
		return "", usageError(stderr, fs, "unexpected argument %q", fs.Arg(0)), false
	}
	return *p, 0, true
}

// loadConfig parses and validates a file; the error lists every problem.
func loadConfig(path string) (*config.Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return config.Load(f, os.LookupEnv)
}

// configArg reads the -config flag of a command and loads the file. A
// non-zero code is the exit code: usage printed, or every problem printed.
// A -h prints the help and gives code 0 with a nil configuration: callers
// return code whenever cfg is nil.
func configArg(name string, args []string, stdout, stderr io.Writer) (cfg *config.Config, path string, code int) {
	path, code, ok := configFlag(name, args, stdout, stderr)
	if !ok {
		return nil, "", code
	}
	cfg, err := loadConfig(path)
	if err != nil {
		printProblems(stderr, path, err)
		return nil, path, 1
	}
	return cfg, path, 0
}

func check(args []string, stdout, stderr io.Writer) int {
	cfg, path, code := configArg("check", args, stdout, stderr)
	if cfg != nil {
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	return code
}

// printProblems prints one line per problem, each with the file name.
func printProblems(w io.Writer, path string, err error) {
	list := config.Problems(err)
	fmt.Fprintf(w, "%s: %d problem(s):\n", path, len(list))
	for _, e := range list {
		fmt.Fprintf(w, "  %s\n", e)
	}
}

func newLogger(c config.Log, w io.Writer) *slog.Logger { return logging.New(c, w) }

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, _, code := configArg("serve", args, stdout, stderr)
	if cfg == nil {
		return code
	}
	log := newLogger(cfg.Log, stderr)
	return runSidecar(ctx, cfg, log, nil)
}

func runSidecar(ctx context.Context, cfg *config.Config, log *slog.Logger, ready func(*sidecar.Sidecar)) int {
	// The last batch of access lines (log.flush_interval), written before
	// the process exits.
	defer logging.Flush(log)
	// A minimum heap goal, unless the operator chose GOGC: see
	// internal/gcgoal and docs/performance.md.
	stopGC, _ := gcgoal.Start(ctx)
	defer stopGC()
	sc, err := sidecar.New(ctx, cfg, sidecar.Options{Logger: log})
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	if err := sc.Listen(); err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	if ready != nil {
		ready(sc)
	}
	if err := sc.Serve(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("serve failed", "err", err)
		return 1
	}
	return 0
}

// openRedis opens the configured Redis for an operator command. The
// embedded store belongs to a running process and cannot be reached from
// outside, so it is refused; an unreachable Redis is reported at once.
func openRedis(ctx context.Context, cmd string, cfg config.Redis, log *slog.Logger, stderr io.Writer) (*store.Store, bool) {
	if cfg.Embedded() {
		fmt.Fprintf(stderr, "tollgate %s: no redis configured: the embedded store belongs to a running process and cannot be reached from outside\n", cmd)
		return nil, false
	}
	st, err := store.Open(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "tollgate %s: %v\n", cmd, err)
		return nil, false
	}
	if err := st.Ping(ctx); err != nil {
		st.Close()
		fmt.Fprintf(stderr, "tollgate %s: redis unreachable: %v\n", cmd, err)
		return nil, false
	}
	return st, true
}
