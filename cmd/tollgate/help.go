package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tollgate-dev/tollgate/webhook"
)

// help is what `tollgate CMD -h` prints: the synopsis, what the command
// does, its flags (from the flag set) and examples to copy.
type help struct {
	synopsis string
	about    string
	examples []string
}

// helpTexts are whole help texts before the flags (usage line,
// description, examples), as the operator commands write them.
var helpTexts = map[string]string{"events": eventsHelp, "replay": replayHelp, "usage": usageHelp}

// helpFor returns the help of a command.
func helpFor(name string) help {
	switch name {
	case "serve":
		return help{"tollgate serve -config FILE",
			"Runs the sidecar: the proxy listener (app traffic, the Stripe webhook, the billing API) and the admin\n" +
				"listener (/metrics, /healthz, /readyz). SIGTERM or Ctrl-C drains and shuts down gracefully.",
			[]string{"tollgate serve -config /etc/tollgate/tollgate.yaml"}}
	case "check":
		return help{"tollgate check -config FILE",
			"Validates a configuration and prints every problem with its line and field path. Exit 0 when the\n" +
				"file is valid, 1 when it has problems, 2 on bad flags.",
			[]string{"tollgate check -config deploy/tollgate.example.yaml", "STRIPE_SECRET_KEY=sk_test_x tollgate check -config tollgate.yaml"}}
	case "sync":
		return help{"tollgate sync -config FILE",
			"Reconciles every customer's state with Stripe now: pages through every subscription and every stored\n" +
				"customer and rewrites what differs. Prints progress; exit 1 if a customer could not be checked.",
			[]string{"tollgate sync -config tollgate.yaml"}}
	case "demo":
		return help{"tollgate demo [-listen ADDR] [-admin-listen ADDR] [-log-level LEVEL]",
			"Runs tollgate on its embedded default (in-process store, a small demo app, public demo secrets) and\n" +
				"prints curl and trigger commands that walk through 402 -> subscribe -> 200 -> usage counted.",
			[]string{"tollgate demo", "tollgate demo -listen 127.0.0.1:18080 -log-level info"}}
	case "link":
		return help{"tollgate link -config FILE -user ID [-customer cus_... | -unlink]",
			"Shows which Stripe customer a user (the JWT's user claim) belongs to, or repairs the link: -customer\n" +
				"replaces it, -unlink removes it so that the user's next checkout links anew.",
			[]string{"tollgate link -config tollgate.yaml -user u_123",
				"tollgate link -config tollgate.yaml -user u_123 -customer cus_456",
				"tollgate link -config tollgate.yaml -user u_123 -unlink"}}
	case "grant":
		return help{"tollgate grant -config FILE -customer cus_... [-features a,b] [-limits m=N,...] [-plan P] [-until T] -reason R [-by NAME] [-json]\n" +
			"       tollgate grant -config FILE -list [-customer cus_...] [-json]\n" +
			"       tollgate grant -config FILE -revoke gr_... [-reason R] [-by NAME] [-json]\n" +
			"       tollgate grant -config FILE -audit [-customer cus_...] [-json]",
			"Operator overrides for one customer (comp accounts, sales-led deals, a fix by hand): add features,\n" +
				"raise meter limits, or entitle a configured plan as if subscribed, until -until or until revoked.\n" +
				"A grant never removes or lowers what Stripe entitles. It is stored in Redis and every running\n" +
				"replica applies it, and its revoke, within 1 s; it stops applying at its expiry on every replica.\n" +
				"Every grant and revoke is recorded with who (-by, default $USER) and why (-reason) in the audit\n" +
				"(-audit). Exit 2 on a bad command line or value (which flag, which value), 1 when Redis fails.",
			[]string{"tollgate grant -config tollgate.yaml -customer cus_123 -plan pro -until 720h -reason 'pilot, ticket 4411'",
				"tollgate grant -config tollgate.yaml -customer cus_123 -features exports,sso -reason 'enterprise deal'",
				"tollgate grant -config tollgate.yaml -customer cus_123 -limits api_calls=50000 -until 2027-01-01T00:00:00Z -reason 'launch week'",
				"tollgate grant -config tollgate.yaml -list -customer cus_123",
				"tollgate grant -config tollgate.yaml -revoke gr_0123456789abcdef01234567 -reason 'pilot over'",
				"tollgate grant -config tollgate.yaml -audit -json"}}
	case "trigger":
		return help{"tollgate trigger EVENT [flags]",
			"Signs a realistic Stripe event with the configured webhook secret and posts it to a running tollgate.\n" +
				"EVENT is one of:\n  " + strings.Join(webhook.SampleTypes(), "\n  "),
			[]string{"tollgate trigger customer.subscription.created -customer cus_demo -price price_demo_pro",
				"tollgate trigger invoice.payment_failed -config tollgate.yaml -customer cus_123"}}
	case "version":
		return help{"tollgate version", "Prints the version, the commit and the Go version.", []string{"tollgate version"}}
	}
	return help{synopsis: "tollgate " + name}
}

// newFlags returns a command's flag set. Its output is discarded: parse
// prints help and errors where they belong.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses a command's flags. With -h or -help it prints the help on
// stdout and returns code 0; on a bad flag it prints the error and the
// help on stderr and returns code 2. ok is true when the command should run.
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		printHelp(stdout, fs)
		return 0, false
	}
	fmt.Fprintf(stderr, "tollgate %s: %v\n\n", fs.Name(), err)
	printHelp(stderr, fs)
	return 2, false
}

// usageError prints what is wrong with a command line and the help, for
// exit code 2.
func usageError(stderr io.Writer, fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(stderr, "tollgate %s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	printHelp(stderr, fs)
	return 2
}

func printHelp(w io.Writer, fs *flag.FlagSet) {
	if text, ok := helpTexts[fs.Name()]; ok {
		fmt.Fprint(w, text)
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		return
	}
	h := helpFor(fs.Name())
	fmt.Fprintf(w, "usage: %s\n", h.synopsis)
	if h.about != "" {
		fmt.Fprintf(w, "\n%s\n", h.about)
	}
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if len(h.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, e := range h.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}
