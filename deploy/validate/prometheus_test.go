package validate

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	alertsFile     = "../prometheus/alerts.yaml"
	alertTestsFile = "../prometheus/alerts_test.yaml"
	deployDoc      = "../../docs/deploy.md"
)

// ruleFile is Prometheus's rule file format, decoded strictly.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// Every alert has a severity, a summary and a runbook that is a section of
// docs/deploy.md, and at least one promtool case that shows it firing (CI
// runs `promtool test rules` on them).
func TestAlertsHaveRunbooksAndTests(t *testing.T) {
	var rules ruleFile
	readStrict(t, alertsFile, &rules)
	var tests struct {
		RuleFiles          []string `json:"rule_files"`
		EvaluationInterval string   `json:"evaluation_interval"`
		Tests              []struct {
			Name          string `json:"name"`
			Interval      string `json:"interval"`
			InputSeries   []any  `json:"input_series"`
			AlertRuleTest []struct {
				EvalTime  string `json:"eval_time"`
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readStrict(t, alertTestsFile, &tests)
	fires := map[string]bool{}
	for _, c := range tests.Tests {
		for _, a := range c.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	doc, err := os.ReadFile(deployDoc)
	if err != nil {
		t.Fatal(err)
	}
	anchors := markdownAnchors(string(doc))
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q; want critical or warning", r.Alert, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary", r.Alert)
			}
			want := "docs/deploy.md#" + strings.ToLower(r.Alert)
			if rb := r.Annotations["runbook"]; rb != want {
				t.Errorf("%s: runbook %q; want %q", r.Alert, rb, want)
			} else if !anchors[strings.ToLower(r.Alert)] {
				t.Errorf("%s: docs/deploy.md has no section %q", r.Alert, r.Alert)
			}
			if !fires[r.Alert] {
				t.Errorf("%s: no case in %s expects it to fire", r.Alert, alertTestsFile)
			}
		}
	}
	if n < 10 {
		t.Errorf("found %d alerts; want the whole set", n)
	}
}

// markdownAnchors are the GitHub anchors of a document's headings.
func markdownAnchors(doc string) map[string]bool {
	out := map[string]bool{}
	heading := regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, m := range heading.FindAllStringSubmatch(doc, -1) {
		a := drop.ReplaceAllString(strings.ToLower(m[1]), "")
		out[strings.ReplaceAll(a, " ", "-")] = true
	}
	return out
}

// promtool returns the path of promtool, skipping the test without it
// unless TOLLGATE_TEST_REQUIRE_PROMETHEUS=1 (CI), which makes it a failure.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("TOLLGATE_TEST_REQUIRE_PROMETHEUS") == "1" {
			t.Fatalf("promtool not found and TOLLGATE_TEST_REQUIRE_PROMETHEUS=1; install it with: apt-get install prometheus")
		}
		t.Skip("promtool not found; install it with: apt-get install prometheus")
	}
	return p
}

// Every dashboard query parses as PromQL: promtool checks them as recording
// rules, with Grafana's variables replaced by values.
func TestDashboardExpressionsParse(t *testing.T) {
	bin := promtool(t)
	d := loadDashboard(t)
	vars := strings.NewReplacer("$__rate_interval", "1m", "$__range", "1h", "$job", ".*")
	var rules []map[string]string
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			rules = append(rules, map[string]string{
				"record": fmt.Sprintf("dashboard:panel%d_%s", p.ID, strings.ToLower(q.RefID)),
				"expr":   vars.Replace(q.Expr),
			})
		}
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard_rules.yaml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}

// The Prometheus configs shipped for compose and for a host-local
// Prometheus are valid, rule files included.
func TestPrometheusConfigs(t *testing.T) {
	bin := promtool(t)
	for _, f := range []string{"../prometheus/prometheus.compose.yaml", "../prometheus/scrape.yaml"} {
		if out, err := exec.Command(bin, "check", "config", f).CombinedOutput(); err != nil {
			t.Errorf("promtool check config %s: %v\n%s", f, err, out)
		}
	}
}
