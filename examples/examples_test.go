// The example apps (Express, Next.js, Django) run behind the real tollgate
// binary, a redis-server and the recording Stripe double, and a user without
// JavaScript walks them: 402 → checkout → webhook → 200 → trial → gated page
// → metered calls (a trailer's included) → upgrade with preview, charged as
// previewed → downgrade → cancel → resume → pause → resume → a failed
// payment's banner.
// The browser test (examples/browser, its own module) clicks the same pages.

package examples_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
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
	trialEnd := time.Unix(s.Subscription(sub).TrialEnd, 0).UTC().Format(time.DateOnly)
	if got, want := billing.Text("trial"), "14 days left in your trial (it ends on "+trialEnd+")."; got != want {
		t.Errorf("trial = %q; want %q", got, want)
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

	// 5. The trial ends: Stripe charged the first invoice, a period started.
	s.EndTrial(sub)
	s.Eventually("the billing page to show the subscription active", func() bool {
		billing = u.Get("/billing")
		return billing.Text("status") == "active"
	})
	if billing.Has("trial") {
		t.Errorf("trial shown after the trial ended: %q", billing.Text("trial"))
	}

	// 6. Upgrade: the preview first, then the change it showed, which
	// charges exactly what the preview said was due now.
	upgrade(t, s, u, sub, billing)
	billing = u.Get("/billing")

	// 7. Downgrade: scheduled for the period end, pro until then; nothing
	// is due now, the next invoice is the first at starter's price.
	preview := u.Submit(billing, "preview-starter")
	if !strings.Contains(preview.Text("applies"), "on ") {
		t.Fatalf("downgrade preview: want it to apply at the period end; got %s", preview)
	}
	if got, next := preview.Text("due-now"), preview.Text("next-invoice"); got != "$0.00" || next != "$20.00" {
		t.Errorf("downgrade preview: due now %q, next invoice %q; want $0.00 and $20.00", got, next)
	}
	billing = u.Follow(u.Submit(preview, "confirm"))
	if billing.Text("plan") != "pro" || !strings.Contains(billing.Text("pending-change"), "starter") {
		t.Fatalf("after the downgrade: want pro with a pending switch to starter; got %s", billing)
	}

	// 8. Cancel at period end (drops the pending downgrade), then resume.
	billing = u.Follow(u.Submit(billing, "cancel"))
	if !billing.Has("canceling") || billing.Has("pending-change") || !billing.Has("resume") {
		t.Fatalf("after cancel: want the end date, a resume button, no pending change; got %s", billing)
	}
	billing = u.Follow(u.Submit(billing, "resume"))
	if billing.Has("canceling") || !billing.Has("cancel") || billing.Text("plan") != "pro" {
		t.Fatalf("after resume: want pro, not canceling; got %s", billing)
	}

	// 9. Pause until a chosen day, then resume.
	pause(t, s, u, sub, billing)

	// 10. A failed renewal shows the "fix your payment" banner with
	// Stripe's page to pay the invoice; the grace period keeps access.
	hosted := s.FailPayment(sub, 8000)
	s.Eventually("the payment failed banner", func() bool {
		billing = u.Get("/billing")
		return billing.Has("payment-failed")
	})
	if got := billing.Link("fix-payment"); got != hosted {
		t.Errorf("fix your payment links to %q; want the invoice's hosted page %q", got, hosted)
	}
	inv, _ := s.Stripe.Invoice("in_failed_" + sub.Customer)
	retry := time.Unix(inv.NextPaymentAttempt, 0).UTC().Format(time.DateOnly)
	if got := billing.Text("payment-failed"); !strings.Contains(got, "$80.00 failed (attempt 1)") || !strings.Contains(got, retry) {
		t.Errorf("payment failed banner = %q; want the amount, the attempt and the retry on %s", got, retry)
	}
	if billing.Text("status") != "past_due" || billing.Has("pause") {
		t.Errorf("after a failed payment: want past_due and no pause button (Stripe refuses to pause it); got %s", billing)
	}
	if p := u.Get("/reports"); p.Status != http.StatusOK {
		t.Errorf("reports during the grace period after a failed payment: %s; want 200", p)
	}

	// 11. The portal.
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

// upgrade previews the switch to pro from billing and confirms it: the
// preview shows what is due now and the next invoice, and the change
// charges exactly the amount due now (the double records the invoice).
func upgrade(t *testing.T, s *stack.Stack, u *stack.User, sub stack.Subscriber, billing *stack.Page) {
	t.Helper()
	preview := u.Submit(billing, "preview-pro")
	if preview.Status != http.StatusOK || !strings.Contains(preview.Text("applies"), "now") {
		t.Fatalf("upgrade preview: want it to apply now; got %s", preview)
	}
	dueNow := preview.Text("due-now")
	if dueNow == "" || dueNow == "$0.00" {
		t.Errorf("upgrade preview due now = %q; want the prorated amount", dueNow)
	}
	if got := preview.Text("next-invoice"); got != "$80.00" {
		t.Errorf("upgrade preview next invoice = %q; want pro's $80.00", got)
	}
	// The click comes in a later second than the preview, so a change made
	// as of the click, not of the preview, would show.
	asOf := preview.Field("confirm", "proration_date")
	testrig.WaitFor(t, 10*time.Second, func() error {
		if strconv.FormatInt(time.Now().Unix(), 10) == asOf {
			return fmt.Errorf("still the preview's second")
		}
		return nil
	})
	billing = u.Follow(u.Submit(preview, "confirm"))
	if billing.Text("plan") != "pro" || billing.Has("error") {
		t.Fatalf("after the upgrade: want plan pro; got %s", billing)
	}
	// Prorated as of the preview's moment: what the customer saw.
	if got, want := s.ChangedAsOf(sub), asOf; got != want || want == "" {
		t.Errorf("the change reached Stripe with proration_date %q; want the preview's %q", got, want)
	}
	inv := s.Charged(sub)
	if inv == nil {
		t.Fatalf("the upgrade charged nothing at once; the preview said %s", dueNow)
	}
	if got := stack.USD(inv.AmountPaid); got != dueNow {
		t.Errorf("the upgrade charged %s (%s); the preview said %s", got, inv.ID, dueNow)
	}
	if !slices.ContainsFunc(billing.All("invoice"), func(row string) bool {
		return strings.HasPrefix(row, inv.Number+" ") && strings.Contains(row, " "+dueNow+" paid")
	}) {
		t.Errorf("invoices on the billing page = %q; want %s for %s, paid", billing.All("invoice"), inv.Number, dueNow)
	}
	testrig.Eventually(t, "exports to open on pro", func() bool {
		return u.Get("/exports/report.csv").Status == http.StatusOK && u.Get("/reports").Has("exports")
	})
}

// pause pauses payments and access until a chosen day, then resumes: the
// gated pages answer 402 while paused (Stripe's status staying active)
// and open again on resuming.
func pause(t *testing.T, s *stack.Stack, u *stack.User, sub stack.Subscriber, billing *stack.Page) {
	t.Helper()
	// A day that is not one is refused by the app, a day in the past by
	// tollgate; neither pauses anything.
	for _, c := range []struct{ day, code string }{{"next week", "invalid_date"}, {"2020-01-01", "invalid_request"}} {
		p := u.Follow(u.Submit(billing, "pause", "resumes_on", c.day))
		if !strings.Contains(p.Text("error"), c.code) || p.Has("paused") {
			t.Errorf("pause until %q: want the error %s and no pause; got %s", c.day, c.code, p)
		}
	}
	day := time.Now().UTC().AddDate(0, 0, 30).Format(time.DateOnly)
	billing = u.Follow(u.Submit(billing, "pause", "resumes_on", day))
	if got, want := billing.Text("paused"), "Payments and access are paused until "+day+"."; got != want || !billing.Has("resume") || billing.Has("pause") {
		t.Fatalf("after pause: paused = %q, want %q, and a resume button instead of pause; got %s", got, want, billing)
	}
	if billing.Text("status") != "active" {
		t.Errorf("paused: status = %q; want Stripe's active (a pause is pause_collection)", billing.Text("status"))
	}
	pc := s.Subscription(sub).PauseCollection
	if at, _ := time.Parse(time.DateOnly, day); pc == nil || pc.Behavior != "void" || pc.ResumesAt != at.Unix() {
		t.Errorf("Stripe's pause_collection = %+v; want void until %s", pc, day)
	}
	for _, path := range []string{"/reports", "/api/generate"} {
		if p := u.Get(path); p.Status != http.StatusPaymentRequired || !strings.Contains(p.Body, "subscription_required") {
			t.Errorf("%s while paused: %s; want 402 subscription_required", path, p)
		}
	}
	billing = u.Follow(u.Submit(billing, "resume"))
	if billing.Has("paused") || !billing.Has("pause") || !billing.Has("cancel") {
		t.Fatalf("after resuming the pause: want the pause and cancel buttons back; got %s", billing)
	}
	if pc := s.Subscription(sub).PauseCollection; pc != nil && pc.Behavior != "" {
		t.Errorf("Stripe's pause_collection after resume = %+v; want none", pc)
	}
	testrig.Eventually(t, "the reports to open again after resuming", func() bool { return u.Get("/reports").Status == http.StatusOK })
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
	streamDeclares(t, s, 5)
	want += 5
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

// streamDeclares checks how the app itself declares a stream's units,
// asking it directly on loopback (as tollgate does): Express in a declared
// trailer after the body, the others in the header (a Web Response and WSGI
// have no trailers).
func streamDeclares(t *testing.T, s *stack.Stack, units int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/stream?tokens=%d", s.AppURL, units), nil)
	req.Header.Set("X-Tollgate-User", "u_direct")
	req.Header.Set("X-Tollgate-Customer", "cus_direct")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body) // the trailer comes after the body
	want := strconv.Itoa(units)
	header, trailer := resp.Header.Get("X-Tollgate-Usage"), resp.Trailer.Get("X-Tollgate-Usage")
	// A trailer reaches resp.Trailer only when the head declared it.
	if s.App.StreamTrailer && (header != "" || trailer != want) {
		t.Errorf("%s's stream: usage header %q, trailer %q; want only the trailer %s", s.App.Name, header, trailer, want)
	}
	if !s.App.StreamTrailer && (header != want || trailer != "") {
		t.Errorf("%s's stream: usage header %q, trailer %q; want the header %s", s.App.Name, header, trailer, want)
	}
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
