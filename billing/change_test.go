package billing

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/config"
)

// itemPrices returns the price ids of the double's subscription items.
func (r *rig) itemPrices(sub string) []string {
	r.t.Helper()
	s, ok := r.double.Subscription(sub)
	if !ok {
		r.t.Fatalf("the double has no subscription %s", sub)
	}
	var out []string
	for _, it := range s.Items.Data {
		out = append(out, it.Price.ID)
	}
	return out
}

func TestPreviewAndUpgrade(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_starter_m")

	p := r.call("POST", "/subscription/preview", "u1", "cus_A", `{"plan":"team"}`)
	if p.status != http.StatusOK || p.str("applies") != appliesNow || p.str("plan") != "team" || p.str("interval") != "month" {
		t.Fatalf("preview = %d %s; want 200, team per month, applies now", p.status, p.raw)
	}
	date := int64(p.body["proration_date"].(float64))
	if date != r.now.Unix() {
		t.Errorf("proration_date = %d; want now (%d)", date, r.now.Unix())
	}
	up := r.stripeCalls("GET", "/v1/invoices/upcoming")
	if len(up) != 2 || up[0].Form.Get("subscription_items[0][id]") != "sub_A_itema" ||
		up[0].Form.Get("subscription_items[0][price]") != "price_team_m" ||
		up[0].Form.Get("subscription_proration_behavior") != "always_invoice" ||
		up[0].Form.Get("subscription_proration_date") != strconv.FormatInt(date, 10) ||
		up[1].Form.Get("subscription_proration_behavior") != "none" {
		t.Errorf("upcoming invoice asked with %v; want item sub_A_itema -> price_team_m invoiced at once at %d, then the renewal", up, date)
	}
	// Two thirds of the period are left: 2/3 × (90.00 − 10.00) now, 90.00 at the period end.
	due, next := r.invoiceView(p, "due_now"), r.invoiceView(p, "next_invoice")
	if due.Amount != 6000-667 || len(due.Lines) != 2 || !due.Lines[0].Proration || due.Currency != "usd" {
		t.Errorf("due_now = %+v; want 5333 usd in the two proration lines", due)
	}
	if next.Amount != 9000 || len(next.Lines) != 1 || next.Lines[0].Proration || !next.Date.Equal(r.now.Add(20*24*time.Hour)) {
		t.Errorf("next_invoice = %+v; want 9000 at the period end, the renewal only", next)
	}
	if n := len(r.stripeCalls("POST", "/v1/subscriptions/sub_A")); n != 0 {
		t.Fatalf("preview changed the subscription (%d updates)", n)
	}

	// The gate denies a team-only route before the change and allows it after, at once.
	teamOnly := config.Require{Plans: []string{"team"}}
	if d := r.gate.Decide(r.t.Context(), "cus_A", teamOnly, false); d.Denial == nil {
		t.Fatalf("team route allowed before the upgrade")
	}
	c := r.call("POST", "/subscription/change", "u1", "cus_A", `{"plan":"team","proration_date":`+strconv.FormatInt(date, 10)+`}`)
	if c.status != http.StatusOK || c.str("applies") != appliesNow || c.str("plan") != "team" {
		t.Fatalf("change = %d %s; want 200 applies now", c.status, c.raw)
	}
	if got := r.itemPrices("sub_A"); len(got) != 1 || got[0] != "price_team_m" {
		t.Errorf("subscription prices after the upgrade = %v; want [price_team_m]", got)
	}
	upd := r.stripeCalls("POST", "/v1/subscriptions/sub_A")
	if len(upd) != 1 {
		t.Fatalf("%d subscription updates; want 1", len(upd))
	}
	for k, want := range map[string]string{"items[0][id]": "sub_A_itema", "items[0][price]": "price_team_m",
		"proration_behavior": "always_invoice", "proration_date": strconv.FormatInt(date, 10),
		"payment_behavior": "pending_if_incomplete"} {
		if v := upd[0].Form.Get(k); v != want {
			t.Errorf("update %s = %q; want %q", k, v, want)
		}
	}
	if d := r.gate.Decide(r.t.Context(), "cus_A", teamOnly, false); d.Denial != nil {
		t.Errorf("team route denied right after the upgrade: %+v", d.Denial)
	}
	st, err := r.store.Get(r.t.Context(), "cus_A")
	if err != nil || st.Source != "billing:change" {
		t.Errorf("stored state = %+v, %v; want it rewritten by billing:change", st, err)
	}
}

// A downgrade waits for the period end: a schedule keeps the current
// prices until then and moves to the new ones after; nothing changes now.
func TestDowngradeAtPeriodEnd(t *testing.T) {
	r := newRig(t)
	r.putPrice(recurring("price_addon", 500, stripe.PriceRecurringIntervalMonth, false))
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_pro_m", "price_calls_m", "price_addon")

	c := r.call("POST", "/subscription/change", "u1", "cus_A", `{"plan":"starter"}`)
	if c.status != http.StatusOK || c.str("applies") != appliesPeriodEnd {
		t.Fatalf("downgrade = %d %s; want 200 applies period_end", c.status, c.raw)
	}
	s, _ := r.double.Subscription("sub_A")
	if s.Schedule == nil || s.Schedule.ID == "" {
		t.Fatalf("subscription has no schedule after a downgrade")
	}
	if got := r.itemPrices("sub_A"); len(got) != 3 || got[0] != "price_pro_m" {
		t.Errorf("prices now = %v; want them unchanged until the period end", got)
	}
	sched, ok := r.double.Schedule(s.Schedule.ID)
	if !ok || len(sched.Phases) != 2 {
		t.Fatalf("schedule = %+v; want two phases", sched)
	}
	if sched.Phases[0].EndDate != s.CurrentPeriodEnd {
		t.Errorf("phase 1 ends %d; want the period end %d", sched.Phases[0].EndDate, s.CurrentPeriodEnd)
	}
	var next []string
	for _, it := range sched.Phases[1].Items {
		next = append(next, it.Price.ID)
	}
	if len(next) != 2 || next[0] != "price_addon" || next[1] != "price_starter_m" {
		t.Errorf("phase 2 prices = %v; want the add-on kept and price_starter_m", next)
	}
	if sched.EndBehavior != stripe.SubscriptionScheduleEndBehaviorRelease {
		t.Errorf("end_behavior = %q; want release", sched.EndBehavior)
	}
	// The billing page shows the change waiting for the period end.
	g := r.call("GET", "/subscription", "u1", "cus_A", "")
	pc, _ := g.body["pending_change"].(map[string]any)
	if g.str("plan") != "pro" || pc == nil || pc["plan"] != "starter" ||
		pc["effective_at"] != time.Unix(s.CurrentPeriodEnd, 0).UTC().Format(time.RFC3339) {
		t.Errorf("subscription after the downgrade = %s; want plan pro with pending_change starter at the period end", g.raw)
	}

	// Changing one's mind: an upgrade drops the pending downgrade first.
	c = r.call("POST", "/subscription/change", "u1", "cus_A", `{"plan":"team"}`)
	if c.status != http.StatusOK || c.str("applies") != appliesNow {
		t.Fatalf("upgrade over a pending downgrade = %d %s; want 200 applies now", c.status, c.raw)
	}
	if n := len(r.stripeCalls("POST", "/v1/subscription_schedules/"+s.Schedule.ID+"/release")); n != 1 {
		t.Errorf("%d schedule releases; want 1", n)
	}
	if g := r.call("GET", "/subscription", "u1", "cus_A", ""); g.body["pending_change"] != nil || g.str("plan") != "team" {
		t.Errorf("subscription after the upgrade = %s; want plan team and no pending change", g.raw)
	}
	// The metered price of pro is dropped, the add-on kept.
	if got := r.itemPrices("sub_A"); len(got) != 2 || got[0] != "price_team_m" || got[1] != "price_addon" {
		t.Errorf("prices after the upgrade = %v; want [price_team_m price_addon]", got)
	}
}

func TestChangeRefusals(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_starter_m")
	r.double.PutCustomer(&stripe.Customer{ID: "cus_None"})
	old := strconv.FormatInt(r.now.Add(-40*24*3600e9).Unix(), 10)
	future := strconv.FormatInt(r.now.Unix()+60, 10)
	cases := []struct {
		name, customer, body string
		status               int
		code                 string
	}{
		{"no customer", "", `{"plan":"team"}`, 409, "no_customer"},
		{"no subscription", "cus_None", `{"plan":"team"}`, 409, "no_subscription"},
		{"same plan", "cus_A", `{"plan":"starter"}`, 409, "same_plan"},
		{"one-time plan", "cus_A", `{"plan":"lifetime"}`, 400, "invalid_request"},
		{"proration date before the period", "cus_A", `{"plan":"team","proration_date":` + old + `}`, 400, "invalid_request"},
		{"proration date in the future", "cus_A", `{"plan":"team","proration_date":` + future + `}`, 400, "invalid_request"},
		{"interval the plan lacks", "cus_A", `{"plan":"team","interval":"year"}`, 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/subscription/preview", "/subscription/change"} {
				a := r.call("POST", path, "u1", tc.customer, tc.body)
				if a.status != tc.status || a.code() != tc.code {
					t.Errorf("%s %s = %d %s; want %d %s", path, tc.body, a.status, a.raw, tc.status, tc.code)
				}
			}
		})
	}
	if n := len(r.stripeCalls("POST", "/v1/subscriptions/sub_A")); n != 0 {
		t.Errorf("refused changes updated the subscription %d times", n)
	}
}

func TestCancelAndResume(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_pro_m")
	if a := r.call("POST", "/subscription/resume", "u1", "cus_A", ""); a.status != http.StatusConflict || a.code() != "not_canceled" {
		t.Errorf("resume of a running subscription = %d %s; want 409 not_canceled", a.status, a.raw)
	}
	a := r.call("POST", "/subscription/cancel", "u1", "cus_A", "")
	if a.status != http.StatusOK || a.body["cancel_at_period_end"] != true {
		t.Fatalf("cancel = %d %s; want 200, cancel_at_period_end", a.status, a.raw)
	}
	if s, _ := r.double.Subscription("sub_A"); !s.CancelAtPeriodEnd || s.Status != stripe.SubscriptionStatusActive {
		t.Errorf("double: cancel_at_period_end %v, status %s; want true, still active", s.CancelAtPeriodEnd, s.Status)
	}
	// Access lasts until the period end; the page shows the cancellation at once.
	if d := r.gate.Decide(r.t.Context(), "cus_A", config.Require{Subscription: true}, false); d.Denial != nil {
		t.Errorf("denied right after cancelling at period end: %+v", d.Denial)
	}
	if s := r.call("GET", "/subscription", "u1", "cus_A", ""); s.body["cancel_at_period_end"] != true || s.body["entitled"] != true {
		t.Errorf("subscription after cancel = %s; want cancel_at_period_end and entitled", s.raw)
	}
	r.call("POST", "/subscription/cancel", "u1", "cus_A", "")
	if c := r.call("POST", "/subscription/change", "u1", "cus_A", `{"plan":"team"}`); c.status != http.StatusConflict || c.code() != "subscription_canceling" {
		t.Errorf("change of a subscription ending at period end = %d %s; want 409 subscription_canceling", c.status, c.raw)
	}
	if n := len(r.stripeCalls("POST", "/v1/subscriptions/sub_A")); n != 1 {
		t.Errorf("cancelling twice (and a refused change) made %d updates; want 1", n)
	}
	a = r.call("POST", "/subscription/resume", "u1", "cus_A", "")
	if a.status != http.StatusOK || a.body["cancel_at_period_end"] != false {
		t.Fatalf("resume = %d %s; want 200, cancel_at_period_end false", a.status, a.raw)
	}
	if s, _ := r.double.Subscription("sub_A"); s.CancelAtPeriodEnd {
		t.Errorf("double still cancels at period end after resume")
	}

	r.subscribe("cus_P", "sub_P", stripe.SubscriptionStatusPaused, "price_pro_m")
	if a := r.call("POST", "/subscription/resume", "u2", "cus_P", ""); a.status != http.StatusOK || a.str("status") != "active" {
		t.Errorf("resume of a paused subscription = %d %s; want 200 active", a.status, a.raw)
	}
	if n := len(r.stripeCalls("POST", "/v1/subscriptions/sub_P/resume")); n != 1 {
		t.Errorf("%d resume calls; want 1", n)
	}
}

// Choosing the plan one is on while a downgrade is pending withdraws the
// downgrade: the schedule is released and the subscription renews as it
// is (issue 14: this was refused with 409 same_plan).
func TestWithdrawPendingDowngrade(t *testing.T) {
	r := newRig(t)
	r.subscribe("cus_A", "sub_A", stripe.SubscriptionStatusActive, "price_pro_m", "price_calls_m")
	if c := r.call("POST", "/subscription/change", "u1", "cus_A", `{"plan":"starter"}`); c.status != http.StatusOK {
		t.Fatalf("downgrade = %d %s", c.status, c.raw)
	}
	s, _ := r.double.Subscription("sub_A")
	if s.Schedule == nil || s.Schedule.ID == "" {
		t.Fatal("no schedule after the downgrade")
	}
	sched, end := s.Schedule.ID, time.Unix(s.CurrentPeriodEnd, 0).UTC().Format(time.RFC3339)

	p := r.call("POST", "/subscription/preview", "u1", "cus_A", `{"plan":"pro"}`)
	w, _ := p.body["withdraws"].(map[string]any)
	if p.status != http.StatusOK || w == nil || w["plan"] != "starter" || w["effective_at"] != end || p.str("applies") != appliesNow ||
		r.invoiceView(p, "due_now").Amount != 0 || p.body["next_invoice"] != nil {
		t.Errorf("preview of the current plan = %d %s; want 200 withdrawing starter at %s, nothing due", p.status, p.raw, end)
	}
	c := r.call("POST", "/subscription/change", "u1", "cus_A", `{"plan":"pro"}`)
	w, _ = c.body["withdrawn"].(map[string]any)
	if c.status != http.StatusOK || w == nil || w["plan"] != "starter" || c.str("plan") != "pro" || c.body["charged"] != nil {
		t.Fatalf("change to the current plan = %d %s; want 200, withdrawn starter, nothing charged", c.status, c.raw)
	}
	if n := len(r.stripeCalls("POST", "/v1/subscription_schedules/"+sched+"/release")); n != 1 {
		t.Errorf("%d schedule releases; want 1", n)
	}
	if s, _ := r.double.Subscription("sub_A"); s.Schedule != nil && s.Schedule.ID != "" || r.itemPrices("sub_A")[0] != "price_pro_m" {
		t.Errorf("double after the withdrawal: schedule %v, prices %v; want none, [price_pro_m]", s.Schedule, r.itemPrices("sub_A"))
	}
	if n := len(r.stripeCalls("POST", "/v1/subscriptions/sub_A")); n != 0 {
		t.Errorf("the withdrawal updated the subscription %d times; want only the release", n)
	}
	if g := r.call("GET", "/subscription", "u1", "cus_A", ""); g.body["pending_change"] != nil || g.str("plan") != "pro" {
		t.Errorf("subscription after the withdrawal = %s; want plan pro, no pending change", g.raw)
	}
	if again := r.call("POST", "/subscription/change", "u1", "cus_A", `{"plan":"pro"}`); again.status != http.StatusConflict || again.code() != "same_plan" {
		t.Errorf("the current plan with nothing pending = %d %s; want 409 same_plan", again.status, again.raw)
	}
}
