package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Issue 12: every subcommand answers -h with its synopsis, flags and
// examples on stdout and exits 0; a bad command line prints what is wrong
// and the help on stderr and exits 2.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, name := range []string{"serve", "check", "sync", "demo", "usage", "link", "grant", "trigger", "version"} {
		for _, flag := range []string{"-h", "-help", "--help"} {
			var out, errOut bytes.Buffer
			code := run(context.Background(), []string{name, flag}, &out, &errOut)
			if code != 0 || errOut.Len() != 0 {
				t.Errorf("tollgate %s %s = exit %d, stderr %q; want exit 0 and nothing on stderr", name, flag, code, errOut.String())
			}
			for _, want := range []string{"usage: tollgate " + name, "Examples:\n  tollgate " + name} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("tollgate %s %s printed %q; want it to contain %q", name, flag, out.String(), want)
				}
			}
		}
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"help", name}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "usage: tollgate "+name) {
			t.Errorf("tollgate help %s = exit %d %q; want its help", name, code, out.String())
		}
		out.Reset()
		if code := run(context.Background(), []string{name, "-no-such-flag"}, &out, &errOut); code != 2 ||
			!strings.Contains(errOut.String(), "flag provided but not defined: -no-such-flag") || !strings.Contains(errOut.String(), "usage: tollgate "+name) {
			t.Errorf("tollgate %s -no-such-flag = exit %d, stderr %q; want exit 2 with the error and the help", name, code, errOut.String())
		}
	}
}

func TestMissingRequiredFlagsSayWhich(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"check"}, "tollgate check: -config FILE is required"},
		{[]string{"usage"}, "tollgate usage: -config FILE is required"},
		{[]string{"link", "-config", "x.yaml"}, "tollgate link: -user ID is required"},
		{[]string{"link", "-config", "x.yaml", "-user", "u", "-unlink", "-customer", "cus_1"}, "-customer and -unlink exclude each other"},
		{[]string{"trigger"}, "tollgate trigger: EVENT is required"},
		{[]string{"grant"}, "tollgate grant: -config FILE is required"},
		{[]string{"grant", "-config", "x.yaml", "-features", "a", "-reason", "r"}, "tollgate grant: -customer cus_... is required"},
		{[]string{"check", "-config", "x.yaml", "extra"}, `unexpected argument "extra"`},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), c.args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("tollgate %v = exit %d, stderr %q; want exit 2 and %q", c.args, code, errOut.String(), c.want)
		}
	}
}
