package examples_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/examples/internal/stack"
)

// The point of the examples: an app behind tollgate never talks to Stripe.
// Each app's sources may import a Stripe library in one file only, the
// webhook receiver, and use nothing of it but the signature check.
func TestAppsNeverCallStripe(t *testing.T) {
	for _, app := range stack.Apps() {
		t.Run(app.Name, func(t *testing.T) {
			files, err := app.SourceFiles()
			if err != nil || len(files) == 0 {
				t.Fatalf("%s: no source files (%v)", app.Dir, err)
			}
			imported := false
			for _, f := range files {
				src, err := os.ReadFile(filepath.Join(app.Dir, f))
				if err != nil {
					t.Fatal(err)
				}
				problems, imports := checkStripeUse(f, string(src), f == app.Webhook)
				for _, p := range problems {
					t.Errorf("%s/%s: %s", app.Name, f, p)
				}
				imported = imported || imports
			}
			if !imported {
				t.Errorf("%s: %s does not import the Stripe library: where are forwarded events verified?", app.Name, app.Webhook)
			}
		})
	}
}

// The checker itself finds what it is for.
func TestCheckStripeUse(t *testing.T) {
	for _, c := range []struct {
		name, file, src string
		webhook         bool
		want            int // problems
	}{
		{"js webhook check only", "w.js", "import Stripe from 'stripe';\nStripe.webhooks.constructEvent(b, s, k);", true, 0},
		{"js client in the webhook file", "w.js", "import Stripe from 'stripe';\nconst s = new Stripe(key);\ns.customers.create();", true, 1},
		{"js client factory in the webhook file", "w.js", "import Stripe from 'stripe';\nconst s = Stripe(key);", true, 1},
		{"js API resource in the webhook file", "w.js", "import Stripe from 'stripe';\nStripe.customers.create();", true, 1},
		{"js import elsewhere", "page.js", "import Stripe from \"stripe\";", false, 1},
		{"js require elsewhere", "x.cjs", "const stripe = require('stripe')(key);", false, 1},
		{"js browser library", "a.jsx", "import { loadStripe } from '@stripe/stripe-js';", false, 1},
		{"js secret key", "a.js", "const k = process.env.STRIPE_SECRET_KEY;", false, 1},
		{"js API host", "a.js", "fetch('https://api.stripe.com/v1/customers')", false, 1},
		{"py webhook check only", "w.py", "import stripe\nstripe.Webhook.construct_event(b, s, k)\nexcept stripe.error.SignatureVerificationError:", true, 0},
		{"py API call in the webhook file", "w.py", "import stripe\nstripe.api_key = k\nstripe.Customer.retrieve(c)", true, 3},
		{"py import elsewhere", "views.py", "from stripe import Customer", false, 1},
		{"template", "t.html", "<p>Pay with Stripe</p>", false, 0},
	} {
		problems, _ := checkStripeUse(c.file, c.src, c.webhook)
		if len(problems) != c.want {
			t.Errorf("%s: checkStripeUse = %q; want %d problems", c.name, problems, c.want)
		}
	}
}

var (
	jsStripeImport = regexp.MustCompile(`(?:from\s*|require\(\s*|import\(\s*)['"](?:stripe|@stripe/[^'"]*)['"]`)
	pyStripeImport = regexp.MustCompile(`(?m)^\s*(?:import\s+stripe\b|from\s+stripe\b)`)
	jsStripeUse    = regexp.MustCompile(`\bnew\s+Stripe\b|\bStripe\s*\(|\bStripe\b(\.[A-Za-z_.]+)?`)
	pyStripeUse    = regexp.MustCompile(`\bstripe\.([A-Za-z_.]+)`)
	secretUse      = regexp.MustCompile(`STRIPE_SECRET_KEY|\bsk_(?:live|test)_|api\.stripe\.com|\bapi_key\b`)
	jsAllowed      = []string{".webhooks.constructEvent"}
	pyAllowed      = []string{"Webhook.construct_event", "error.SignatureVerificationError"}
)

// checkStripeUse lists what a source file does with Stripe that an app
// behind tollgate must not, and whether it imports a Stripe library.
func checkStripeUse(file, src string, webhook bool) (problems []string, imports bool) {
	if m := secretUse.FindString(src); m != "" {
		problems = append(problems, "mentions "+m+": the app holds no Stripe key and calls no Stripe API")
	}
	switch filepath.Ext(file) {
	case ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx":
		imports = jsStripeImport.MatchString(src)
		if !imports {
			return problems, false
		}
		if !webhook || strings.Contains(src, "@stripe/") {
			return append(problems, "imports a Stripe library outside the webhook receiver"), true
		}
		for _, m := range jsStripeUse.FindAllStringSubmatch(stripCode(src), -1) {
			if !slices.Contains(jsAllowed, m[1]) {
				problems = append(problems, "uses Stripe"+m[1]+" ("+m[0]+"), not only the signature check")
			}
		}
	case ".py":
		imports = pyStripeImport.MatchString(src)
		if !imports {
			return problems, false
		}
		if !webhook || regexp.MustCompile(`(?m)^\s*from\s+stripe\b`).MatchString(src) {
			return append(problems, "imports the Stripe library outside the webhook receiver (or names from it)"), true
		}
		for _, m := range pyStripeUse.FindAllStringSubmatch(stripCode(src), -1) {
			if !slices.Contains(pyAllowed, m[1]) {
				problems = append(problems, "uses stripe."+m[1]+", not only the signature check")
			}
		}
	}
	return problems, imports
}

// stripCode drops comment lines and import lines, which name Stripe
// without using it.
func stripCode(src string) string {
	var out []string
	for _, line := range strings.Split(src, "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "//") || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "*") ||
			strings.HasPrefix(l, "import ") || strings.HasPrefix(l, "from ") {
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// examples/tollgate.yaml is what users copy: with the variables its header
// lists, set as in production, it is a valid config (and needs no other).
func TestExampleConfigIsValid(t *testing.T) {
	env := map[string]string{
		"TOLLGATE_LISTEN": ":8080", "TOLLGATE_ADMIN_LISTEN": "127.0.0.1:9090", "APP_URL": "http://127.0.0.1:3000",
		"PUBLIC_URL": "https://app.example.com", "REDIS_URL": "redis://127.0.0.1:6379/0",
		"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_x", "STRIPE_API_BASE": "",
		"TOLLGATE_FORWARD_SECRET": "whsec_forward", "JWT_HMAC_SECRET": strings.Repeat("s", 40),
	}
	f, err := os.Open(filepath.Join(stack.Dir(), "tollgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := config.Load(f, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("examples/tollgate.yaml: %v", err)
	}
	if cfg.Webhook.ForwardURL != "http://127.0.0.1:3000/webhooks/tollgate" || cfg.Auth.JWT.Cookie != "tg_token" {
		t.Errorf("forward_url %q, cookie %q; the apps expect /webhooks/tollgate and tg_token", cfg.Webhook.ForwardURL, cfg.Auth.JWT.Cookie)
	}
}
