// The example apps (Express, Next.js, Django) run behind the real tollgate
// binary, a redis-server and the recording Stripe double, and a user without
// JavaScript walks them: 402 → checkout → webhook → 200 → gated page →
// metered calls → upgrade with preview → downgrade → cancel → resume.
// The browser test (examples/browser, its own module) clicks the same pages.

package examples_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/examples/internal/stack"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(stack.Main(m)) }

func TestBillingWalk(t *testing.T) {
	for _, app := range stack.Apps() {
		t.Run(app.Name, func(t *testing.T) {
			t.Parallel()
			s := stack.Start(t, app)
			walk(t, s, s.User("u_"+app.Name), stack.Subscriber{
				Customer: "cus_" + app.Name, Subscription: "sub_" + app.Name, Trial: true})
		})
	}
}

func walk(t *testing.T, s *stack.Stack, u *stack.User, sub stack.Subscriber) {
	// 1. Not subscribed: tollgate answers the gated routes itself.
	for _, path := range []string{"/api/generate?rows=2", "/reports"} {
		if p := u.Get(path); p.Status != http.StatusPaymentRequired || !strings.Contains(p.Body, "subscription_required") {
			t.Fatalf("before checkout: %s; want 402 subscription_required", p)
		}
	}
	billing := u.Get("/billing")
	if billing.Status != http.StatusOK || billing.Text("plan") != "none" {
		t.Fatalf("billing page before checkout: want 200 with plan none; got %s", billing)
	}

	// 2. Checkout: the page sends the browser to Stripe's Checkout page.
	p := u.Submit(billing, "checkout-starter")
	loc := p.Header.Get("Location")
	if p.Status != http.StatusSeeOther || !strings.HasPrefix(loc, "https://checkout.stripe.test/c/pay/cs_") {
		t.Fatalf("checkout: %s (Location %q); want 303 to a Checkout Session", p, loc)
	}
	session := loc[strings.LastIndex(loc, "/")+1:]

	// 3. The customer pays; Stripe's event reaches tollgate, which forwards it.
	event := s.CompleteCheckout(session, "starter", sub)
	var reports *stack.Page
	testrig.Eventually(t, "the reports page to open", func() bool {
		reports = u.Get("/reports")
		return reports.Status == http.StatusOK
	})
	s.Eventually("the billing page to show the starter trial", func() bool {
		billing = u.Get("/billing?checkout=" + session)
		return billing.Text("plan") == "starter" && billing.Text("status") == "trialing"
	})
	if got, want := billing.Link("invoice-pdf"), "https://pay.stripe.com/invoice/"+sub.Customer+"/pdf"; got != want {
		t.Errorf("invoice PDF link = %q; want %q", got, want)
	}
	if stack.SubscriptionTrialAndDunning && !strings.Contains(billing.Text("trial"), "days left") {
		t.Errorf("trial = %q; want the days left", billing.Text("trial"))
	}
	welcomeExactlyOnce(t, s, event)

	// 4. The gated page, by the plan's features.
	if !strings.Contains(reports.Text("report"), "starter") || !reports.Has("no-exports") {
		t.Errorf("reports page for starter: want the report and no exports; got %s", reports)
	}
	// A client's own X-Tollgate-* headers are removed by tollgate.
	spoofed := u.Get("/reports", "X-Tollgate-Features", "reports,exports", "X-Tollgate-Plan", "pro", "X-Tollgate-Customer", "cus_other")
	if spoofed.Status != http.StatusOK || !strings.Contains(spoofed.Text("report"), sub.Customer+" on the starter plan") || !spoofed.Has("no-exports") {
		t.Errorf("reports with spoofed X-Tollgate-* headers: want the real customer and plan; got %s", spoofed)
	}
	if p := u.Get("/exports/report.csv"); p.Status != http.StatusForbidden || !strings.Contains(p.Body, "feature_required") {
		t.Errorf("exports on starter: %s; want 403 feature_required", p)
	}
	metering(t, s, u)

	// 5. Upgrade: the preview first, then the change it showed.
	billing = u.Get("/billing")
	preview := u.Submit(billing, "preview-pro")
	if preview.Status != http.StatusOK || !strings.Contains(preview.Text("applies"), "now") {
		t.Fatalf("upgrade preview: want it to apply now; got %s", preview)
	}
	if stack.PreviewDueNow && !strings.HasPrefix(preview.Text("due-now"), "$") {
		t.Errorf("upgrade preview due now = %q; want an amount", preview.Text("due-now"))
	}
	billing = u.Follow(u.Submit(preview, "confirm"))
	if billing.Text("plan") != "pro" || billing.Has("error") {
		t.Fatalf("after the upgrade: want plan pro; got %s", billing)
	}
	testrig.Eventually(t, "exports to open on pro", func() bool {
		return u.Get("/exports/report.csv").Status == http.StatusOK && u.Get("/reports").Has("exports")
	})

	// 6. Downgrade: scheduled for the period end, pro until then.
	preview = u.Submit(billing, "preview-starter")
	if !strings.Contains(preview.Text("applies"), "on ") {
		t.Fatalf("downgrade preview: want it to apply at the period end; got %s", preview)
	}
	billing = u.Follow(u.Submit(preview, "confirm"))
	if billing.Text("plan") != "pro" || !strings.Contains(billing.Text("pending-change"), "starter") {
		t.Fatalf("after the downgrade: want pro with a pending switch to starter; got %s", billing)
	}

	// 7. Cancel at period end (drops the pending downgrade), then resume.
	billing = u.Follow(u.Submit(billing, "cancel"))
	if !billing.Has("canceling") || billing.Has("pending-change") || !billing.Has("resume") {
		t.Fatalf("after cancel: want the end date, a resume button, no pending change; got %s", billing)
	}
	billing = u.Follow(u.Submit(billing, "resume"))
	if billing.Has("canceling") || !billing.Has("cancel") || billing.Text("plan") != "pro" {
		t.Fatalf("after resume: want pro, not canceling; got %s", billing)
	}
	if stack.Pause {
		billing = u.Follow(u.Submit(billing, "pause"))
		if billing.Text("status") != "paused" {
			t.Fatalf("after pause: want status paused; got %s", billing)
		}
		billing = u.Follow(u.Submit(billing, "resume"))
	}

	// 8. A failed renewal shows the "fix your payment" banner.
	s.FailPayment(sub)
	if stack.SubscriptionTrialAndDunning {
		testrig.Eventually(t, "the payment failed banner", func() bool {
			billing = u.Get("/billing")
			return billing.Has("payment-failed")
		})
		if !strings.Contains(billing.Body, "https://invoice.stripe.com/i/failed_"+sub.Customer) {
			t.Errorf("banner without the invoice link: %s", billing)
		}
	}

	// 9. The portal.
	p = u.Submit(u.Get("/billing"), "portal")
	if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Header.Get("Location"), "https://billing.stripe.test/") {
		t.Errorf("portal: %s (Location %q); want 303 to a portal session", p, p.Header.Get("Location"))
	}
}

// welcomeExactlyOnce: tollgate forwards the checkout event (re-signed) and
// the app writes one welcome email; a redelivery writes none, a forged one
// is refused.
func welcomeExactlyOnce(t *testing.T, s *stack.Stack, event []byte) {
	t.Helper()
	testrig.Eventually(t, "the forwarded checkout event to send the welcome email", func() bool {
		return len(s.Outbox()) == 1
	})
	if code, body := s.Redeliver(event, stack.ForwardSecret); code != http.StatusOK {
		t.Errorf("redelivered event = %d %s; want 200", code, body)
	}
	if code, _ := s.Redeliver(event, "whsec_forged"); code != http.StatusBadRequest {
		t.Errorf("event signed with another secret = %d; want 400", code)
	}
	if got := s.Outbox(); len(got) != 1 {
		t.Errorf("outbox after a redelivery = %v; want one welcome email", got)
	}
}

// metering: the app's units are billed exactly, streamed ones included; an
// error answer is not billed; the usage header never reaches the client.
func metering(t *testing.T, s *stack.Stack, u *stack.User) {
	t.Helper()
	var want int64
	for _, c := range []struct {
		path  string
		units int64
	}{{"/api/generate?rows=3", 3}, {"/api/generate", 1}, {"/api/generate?rows=7", 7}} {
		p := u.Get(c.path)
		var body struct{ Rows []any }
		if p.Status != http.StatusOK || json.Unmarshal([]byte(p.Body), &body) != nil || int64(len(body.Rows)) != c.units {
			t.Fatalf("%s; want 200 with %d rows", p, c.units)
		}
		if p.Header.Get("X-Tollgate-Usage") != "" {
			t.Errorf("%s: the client saw X-Tollgate-Usage %q", c.path, p.Header.Get("X-Tollgate-Usage"))
		}
		want += c.units
	}
	stream := u.Get("/api/stream?tokens=5")
	if stream.Status != http.StatusOK || strings.Count(stream.Body, "data: ") != 5 {
		t.Fatalf("%s; want 200 with 5 events", stream)
	}
	if stream.Header.Get("X-Tollgate-Usage") != "" || stream.Trailer.Get("X-Tollgate-Usage") != "" {
		t.Errorf("the client saw the stream's usage: header %q, trailer %q",
			stream.Header.Get("X-Tollgate-Usage"), stream.Trailer.Get("X-Tollgate-Usage"))
	}
	want += streamUnits(s.App, 5)
	if p := u.Get("/api/generate?rows=5000"); p.Status != http.StatusBadRequest {
		t.Fatalf("%s; want 400", p)
	}
	// Counts reach the usage read when each answer is settled, just after
	// the client has it; the billing API is rate-limited, so poll slowly.
	testrig.WaitEvery(t, 30*time.Second, 500*time.Millisecond, func() error {
		if used := usedCalls(t, u); used != want {
			return fmt.Errorf("GET usage: api_calls used = %d; want %d", used, want)
		}
		return nil
	})
	if got := u.Get("/billing").All("usage-api_calls"); len(got) != 1 || got[0] != "api_calls "+strconv.FormatInt(want, 10)+" 1000" {
		t.Errorf("billing page usage = %q; want api_calls %d of 1000", got, want)
	}
}

// streamUnits is what a streamed answer bills: the units the app declared
// in the header, or in the trailer once tollgate bills trailers (the
// route's 1 unit before).
func streamUnits(app stack.App, declared int64) int64 {
	if app.StreamTrailer && !stack.TrailerUsage {
		return 1
	}
	return declared
}

func usedCalls(t *testing.T, u *stack.User) int64 {
	t.Helper()
	for _, m := range u.API("usage")["meters"].([]any) {
		if mm := m.(map[string]any); mm["meter"] == "api_calls" {
			n, _ := mm["used"].(float64)
			return int64(n)
		}
	}
	t.Fatal("GET usage has no api_calls meter")
	return 0
}
