package validate

import (
	"encoding/json"
	"os"
	"path"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const dashboardFile = "../grafana/tollgate.json"

// dashboard is the part of the Grafana dashboard model the checks read.
type dashboard struct {
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// The dashboard imports anywhere (every panel uses the ${datasource}
// variable, not a datasource id of one Grafana), its panels do not overlap,
// and it covers what issue 12 asks for. That every metric it queries is
// exported is checked against a running tollgate in internal/sidecar
// (TestDashboardAndAlertMetricsAreExported); that every expression parses,
// with promtool in TestDashboardExpressionsParse.
func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.UID != "tollgate" {
		t.Errorf("uid = %q; want tollgate (links and provisioning rely on it)", d.UID)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["job"] != "query" {
		t.Errorf("template variables = %v; want datasource (datasource) and job (query)", vars)
	}
	ids := map[int]bool{}
	cells := map[[2]int]string{}
	var all strings.Builder
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := cells[[2]int{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
				}
				cells[[2]int{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource = %+v; want uid ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, q := range p.Targets {
			if q.Expr == "" || refs[q.RefID] {
				t.Errorf("panel %q: target %q is empty or its refId repeats", p.Title, q.RefID)
			}
			refs[q.RefID] = true
			all.WriteString(q.Expr + "\n")
		}
	}
	for _, want := range []string{
		"tollgate_requests_total", "tollgate_request_duration_seconds_bucket", "tollgate_entitlement_age_seconds_bucket",
		"tollgate_webhook_events_total", "tollgate_usage_units_total", "tollgate_usage_reported_units_total",
		"tollgate_usage_pending_units", "tollgate_stripe_requests_total", "tollgate_quota_lease_requests_total",
		"tollgate_jwks_fetches_total",
	} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("no panel queries %s", want)
		}
	}
}

// compose.yaml mounts the dashboard into the folder the provisioning file
// tells Grafana to load, and the datasource it provisions is Prometheus
// inside the stack.
func TestGrafanaProvisioning(t *testing.T) {
	var dashboards struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Name            string `json:"name"`
			Type            string `json:"type"`
			DisableDeletion bool   `json:"disableDeletion"`
			AllowUIUpdates  bool   `json:"allowUiUpdates"`
			Options         struct {
				Path                      string `json:"path"`
				FoldersFromFilesStructure bool   `json:"foldersFromFilesStructure"`
			} `json:"options"`
		} `json:"providers"`
	}
	readStrict(t, "../grafana/provisioning/dashboards/tollgate.yaml", &dashboards)
	var datasources struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name      string `json:"name"`
			UID       string `json:"uid"`
			Type      string `json:"type"`
			Access    string `json:"access"`
			URL       string `json:"url"`
			IsDefault bool   `json:"isDefault"`
			Editable  bool   `json:"editable"`
		} `json:"datasources"`
	}
	readStrict(t, "../grafana/provisioning/datasources/prometheus.yaml", &datasources)
	if len(datasources.Datasources) != 1 || datasources.Datasources[0].Type != "prometheus" ||
		datasources.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("datasources = %+v; want the stack's Prometheus", datasources.Datasources)
	}
	p, err := loadCompose(t, composeEnv)
	if err != nil {
		t.Fatal(err)
	}
	var target string
	for _, v := range service(t, p, "grafana").Volumes {
		if strings.HasSuffix(v.Source, "tollgate.json") {
			target = v.Target
		}
	}
	if len(dashboards.Providers) != 1 || dashboards.Providers[0].Options.Path != path.Dir(target) {
		t.Errorf("dashboard provider %+v does not load %s, where compose mounts the dashboard", dashboards.Providers, target)
	}
}

func readStrict(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}
