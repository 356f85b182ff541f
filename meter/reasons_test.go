package meter

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// A reason counted somewhere in the package but missing from
// ReportErrorReasons would have no series until its first increment, and
// an alert on it would miss that one.
func TestReportErrorReasonsListed(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	literal := regexp.MustCompile(`Reason: "([a-z_]+)"|UsageReportErrors\.WithLabelValues\([^,()]+, "([a-z_]+)"\)`)
	// "canceled" is never counted: a report cut short by shutdown or a
	// lost lease is not a failure of the report (batcher.failed).
	notCounted := map[string]bool{"canceled": true}
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range literal.FindAllStringSubmatch(string(src), -1) {
			r := m[1] + m[2]
			found++
			if !notCounted[r] && !slices.Contains(ReportErrorReasons, r) {
				t.Errorf("%s counts reason %q, which ReportErrorReasons does not list", f, r)
			}
		}
	}
	if found < 10 {
		t.Fatalf("found %d reason literals; the pattern no longer matches the code", found)
	}
}
