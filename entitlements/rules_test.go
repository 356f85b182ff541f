package entitlements

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

var testPlans = map[string]*config.Plan{
	"starter": {Prices: []string{"price_starter_m", "price_starter_y"}, Features: []string{"reports"}},
	"pro":     {Prices: []string{"price_pro"}, Features: []string{"reports", "exports"}},
	"addon":   {Prices: []string{"price_addon"}, Features: []string{"sso"}},
}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func sub(status string, prices ...string) Subscription {
	return Subscription{ID: "sub_" + status, Status: status, Prices: prices,
		CurrentPeriodStart: t0.AddDate(0, -1, 0), CurrentPeriodEnd: t0}
}

func TestDecideRules(t *testing.T) {
	grace := 72 * time.Hour
	reqSub := config.Require{Subscription: true}
	for _, c := range []struct {
		name     string
		state    State
		req      config.Require
		now      time.Time
		wantCode string // "" = allowed
		wantPlan string
		wantFeat string
	}{
		{"active", State{Subscriptions: []Subscription{sub("active", "price_pro")}}, reqSub, t0.Add(-time.Hour), "", "pro", "exports,reports"},
		{"trialing", State{Subscriptions: []Subscription{sub("trialing", "price_starter_m")}}, reqSub, t0.Add(-time.Hour), "", "starter", "reports"},
		{"no subscription", State{}, reqSub, t0, "subscription_required", "", ""},
		{"past_due inside grace", State{Subscriptions: []Subscription{sub("past_due", "price_pro")}}, reqSub, t0.Add(grace - time.Second), "", "pro", "exports,reports"},
		{"past_due at grace end", State{Subscriptions: []Subscription{sub("past_due", "price_pro")}}, reqSub, t0.Add(grace), "subscription_required", "", ""},
		{"past_due no period fails closed", State{Subscriptions: []Subscription{{ID: "s", Status: "past_due", Prices: []string{"price_pro"}}}}, reqSub, t0, "subscription_required", "", ""},
		{"cancel at period end, before end", State{Subscriptions: []Subscription{func() Subscription { s := sub("active", "price_pro"); s.CancelAtPeriodEnd = true; return s }()}}, reqSub, t0.Add(-time.Second), "", "pro", "exports,reports"},
		{"cancel at period end, after end", State{Subscriptions: []Subscription{func() Subscription { s := sub("active", "price_pro"); s.CancelAtPeriodEnd = true; return s }()}}, reqSub, t0, "subscription_required", "", ""},
		{"active past period without cancel keeps access", State{Subscriptions: []Subscription{sub("active", "price_pro")}}, reqSub, t0.Add(48 * time.Hour), "", "pro", "exports,reports"},
		{"canceled", State{Subscriptions: []Subscription{sub("canceled", "price_pro")}}, reqSub, t0.Add(-time.Hour), "subscription_required", "", ""},
		{"unpaid", State{Subscriptions: []Subscription{sub("unpaid", "price_pro")}}, reqSub, t0.Add(-time.Hour), "subscription_required", "", ""},
		{"incomplete", State{Subscriptions: []Subscription{sub("incomplete", "price_pro")}}, reqSub, t0.Add(-time.Hour), "subscription_required", "", ""},
		{"incomplete_expired", State{Subscriptions: []Subscription{sub("incomplete_expired", "price_pro")}}, reqSub, t0.Add(-time.Hour), "subscription_required", "", ""},
		{"paused", State{Subscriptions: []Subscription{sub("paused", "price_pro")}}, reqSub, t0.Add(-time.Hour), "subscription_required", "", ""},
		{"deleted customer", State{Deleted: true, Subscriptions: []Subscription{sub("active", "price_pro")}}, reqSub, t0.Add(-time.Hour), "subscription_required", "", ""},
		{"plan required, has it", State{Subscriptions: []Subscription{sub("active", "price_pro")}}, config.Require{Plans: []string{"pro"}}, t0.Add(-time.Hour), "", "pro", "exports,reports"},
		{"plan required, other plan", State{Subscriptions: []Subscription{sub("active", "price_starter_y")}}, config.Require{Plans: []string{"pro"}}, t0.Add(-time.Hour), "plan_required", "starter", "reports"},
		{"plan required, none", State{}, config.Require{Plans: []string{"pro"}}, t0, "subscription_required", "", ""},
		{"feature from plan", State{Subscriptions: []Subscription{sub("active", "price_pro")}}, config.Require{Features: []string{"exports"}}, t0.Add(-time.Hour), "", "pro", "exports,reports"},
		{"feature missing", State{Subscriptions: []Subscription{sub("active", "price_starter_m")}}, config.Require{Features: []string{"exports"}}, t0.Add(-time.Hour), "feature_required", "starter", "reports"},
		{"feature from Stripe entitlement", State{Features: []string{"exports"}, Subscriptions: []Subscription{sub("active", "price_starter_m")}}, config.Require{Features: []string{"exports"}}, t0.Add(-time.Hour), "", "starter", "exports,reports"},
		{"feature from Stripe without a subscription", State{Features: []string{"beta"}}, config.Require{Features: []string{"beta"}}, t0, "", "", "beta"},
		{"feature missing and no subscription", State{}, config.Require{Features: []string{"exports"}}, t0, "subscription_required", "", ""},
		{"feature of a lapsed subscription", State{Subscriptions: []Subscription{sub("canceled", "price_pro")}}, config.Require{Features: []string{"exports"}}, t0.Add(-time.Hour), "subscription_required", "", ""},
		{"unknown price: another product's subscription", State{Subscriptions: []Subscription{sub("active", "price_unknown")}}, reqSub, t0.Add(-time.Hour), "subscription_required", "", ""},
		{"two subscriptions merge", State{Subscriptions: []Subscription{sub("active", "price_starter_m"), func() Subscription { s := sub("active", "price_addon"); s.ID = "sub_2"; return s }()}}, config.Require{Features: []string{"sso"}}, t0.Add(-time.Hour), "", "addon,starter", "reports,sso"},
		{"one price, one subscription, two plans", State{Subscriptions: []Subscription{sub("active", "price_pro", "price_addon")}}, config.Require{Plans: []string{"addon"}}, t0.Add(-time.Hour), "", "addon,pro", "exports,reports,sso"},
		{"lapsed plus active", State{Subscriptions: []Subscription{sub("canceled", "price_pro"), func() Subscription { s := sub("active", "price_starter_m"); s.ID = "sub_2"; return s }()}}, config.Require{Plans: []string{"pro"}}, t0.Add(-time.Hour), "plan_required", "starter", "reports"},
		{"no requirement allows the unsubscribed", State{}, config.Require{}, t0, "", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := c.state
			r := Rules{Grace: grace, UpgradeURL: "https://app.example/upgrade"}
			d := r.decide(prepared(&st, NewPlans(testPlans)), c.req, c.now)
			gotCode := ""
			if d.Denial != nil {
				gotCode = d.Denial.Code
				if d.Denial.UpgradeURL != "https://app.example/upgrade" {
					t.Errorf("denial upgrade_url = %q", d.Denial.UpgradeURL)
				}
			}
			if gotCode != c.wantCode {
				t.Fatalf("decide = %q; want %q", gotCode, c.wantCode)
			}
			if c.wantCode == "" || c.wantPlan != "" {
				if d.Plan != c.wantPlan || d.Features != c.wantFeat {
					t.Errorf("plan %q features %q; want %q %q", d.Plan, d.Features, c.wantPlan, c.wantFeat)
				}
			}
		})
	}
}

// A subscription with none of the configured prices (another product sold
// from the same Stripe account) opens nothing, unless gating.any_price is
// set or no plans are configured at all.
func TestUnknownPrices(t *testing.T) {
	other := sub("active", "price_other_product")
	for _, c := range []struct {
		name     string
		plans    *Plans
		state    State
		wantCode string
		wantPlan string
	}{
		{"plans configured", newGatePlans(testPlans, false), State{Subscriptions: []Subscription{other}}, "subscription_required", ""},
		{"gating.any_price", newGatePlans(testPlans, true), State{Subscriptions: []Subscription{other}}, "", ""},
		{"no plans configured", newGatePlans(nil, false), State{Subscriptions: []Subscription{other}}, "", ""},
		{"known beside unknown", newGatePlans(testPlans, false), State{Subscriptions: []Subscription{other,
			func() Subscription { s := sub("active", "price_pro"); s.ID = "sub_2"; return s }()}}, "", "pro"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := Rules{}.decide(prepared(&c.state, c.plans), config.Require{Subscription: true}, t0.Add(-time.Hour))
			code := ""
			if d.Denial != nil {
				code = d.Denial.Code
			}
			if code != c.wantCode || d.Plan != c.wantPlan {
				t.Errorf("decide = %q, plan %q; want %q, plan %q", code, d.Plan, c.wantCode, c.wantPlan)
			}
		})
	}
}

func TestMergeKeepsTollgateOnlyFields(t *testing.T) {
	cur := &State{Customer: "cus_1", HadTrial: true, PaymentFailures: 2}
	fresh := &State{Customer: "cus_1", Subscriptions: []Subscription{sub("active", "price_pro")}}
	got := Merge(cur, fresh)
	if !got.HadTrial || got.PaymentFailures != 2 || len(got.Subscriptions) != 1 {
		t.Errorf("Merge = %+v; want trial history and failures kept, subscriptions from fresh", got)
	}
	if fresh.HadTrial {
		t.Error("Merge modified its argument")
	}
}

func TestDecisionLimits(t *testing.T) {
	plans := map[string]*config.Plan{
		"starter": {Prices: []string{"price_s"}, Limits: map[string]int64{"calls": 100, "exports": 5}},
		"pro":     {Prices: []string{"price_p"}, Limits: map[string]int64{"calls": 1000}},
		"ent":     {Prices: []string{"price_e"}},
	}
	now := t0.Add(-time.Hour)
	for _, c := range []struct {
		name   string
		prices [][]string // one subscription per entry
		meter  string
		want   int64
		wantOK bool
	}{
		{"starter calls", [][]string{{"price_s"}}, "calls", 100, true},
		{"starter exports", [][]string{{"price_s"}}, "exports", 5, true},
		{"unlimited meter", [][]string{{"price_p"}}, "exports", 0, false},
		{"plan without limits", [][]string{{"price_e"}}, "calls", 0, false},
		{"two plans: the larger limit", [][]string{{"price_s"}, {"price_p"}}, "calls", 1000, true},
		{"two plans: one unlimited", [][]string{{"price_s"}, {"price_p"}}, "exports", 0, false},
		{"limited plus unlimited plan", [][]string{{"price_s", "price_e"}}, "calls", 0, false},
		{"no subscription", nil, "calls", 0, false},
	} {
		st := State{}
		for i, p := range c.prices {
			s := sub("active", p...)
			s.ID = fmt.Sprint("sub_", i)
			st.Subscriptions = append(st.Subscriptions, s)
		}
		d := Rules{}.decide(prepared(&st, NewPlans(plans)), config.Require{}, now)
		got, ok := d.Limit(c.meter)
		if got != c.want || ok != c.wantOK {
			t.Errorf("%s: Limit(%q) = %d, %v; want %d, %v", c.name, c.meter, got, ok, c.want, c.wantOK)
		}
	}
}

// A paused collection shuts access until it resumes (by resume, or at
// resumes_at, when Stripe resumes by itself); a 402 of a customer whose
// payment failed links to the invoice to pay.
func TestPauseAndFailedPaymentRules(t *testing.T) {
	grace := 72 * time.Hour
	paused := func(resumes time.Time) Subscription {
		s := sub("active", "price_pro")
		s.CurrentPeriodEnd = t0.Add(30 * 24 * time.Hour)
		s.PauseCollection = &PauseCollection{Behavior: "void", ResumesAt: resumes}
		return s
	}
	failed := func(url string) *FailedInvoice {
		return &FailedInvoice{ID: "in_1", AttemptCount: 2, HostedInvoiceURL: url, AmountDue: 3000, Currency: "usd"}
	}
	const pay = "https://invoice.stripe.com/i/acct_1/test_in_1"
	other := sub("active", "price_starter_m")
	other.ID = "sub_other"
	for _, c := range []struct {
		name        string
		state       State
		now         time.Time
		wantCode    string
		wantMessage string // part of it
		wantPayURL  string
	}{
		{"paused until resumed", State{Subscriptions: []Subscription{paused(time.Time{})}}, t0, "subscription_required", "paused", ""},
		{"paused, resumes later", State{Subscriptions: []Subscription{paused(t0.Add(time.Hour))}}, t0, "subscription_required", "paused", ""},
		{"paused, resumes_at passed", State{Subscriptions: []Subscription{paused(t0.Add(-time.Second))}}, t0, "", "", ""},
		{"paused beside another subscription", State{Subscriptions: []Subscription{paused(time.Time{}), other}}, t0.Add(-time.Hour), "", "", ""},
		{"past_due beyond grace, failed invoice", State{Subscriptions: []Subscription{sub("past_due", "price_pro")}, FailedInvoice: failed(pay)},
			t0.Add(grace), "subscription_required", "payment failed", pay},
		{"past_due beyond grace, nothing known", State{Subscriptions: []Subscription{sub("past_due", "price_pro")}},
			t0.Add(grace), "subscription_required", "past_due", ""},
		{"unpaid, failed invoice", State{Subscriptions: []Subscription{sub("unpaid", "price_pro")}, FailedInvoice: failed(pay)},
			t0, "subscription_required", "payment failed", pay},
		{"past_due in grace", State{Subscriptions: []Subscription{sub("past_due", "price_pro")}, FailedInvoice: failed(pay)},
			t0.Add(grace - time.Second), "", "", ""},
		// Hosted invoice URLs are https; anything else is not sent on.
		{"not an https URL", State{Subscriptions: []Subscription{sub("past_due", "price_pro")}, FailedInvoice: failed("javascript:alert(1)")},
			t0.Add(grace), "subscription_required", "past_due", ""},
		{"canceled, failed invoice", State{Subscriptions: []Subscription{sub("canceled", "price_pro")}, FailedInvoice: failed(pay)},
			t0, "subscription_required", "canceled", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := Rules{Grace: grace}.decide(prepared(&c.state, NewPlans(testPlans)), config.Require{Subscription: true}, c.now)
			code, msg, url := "", "", ""
			if d.Denial != nil {
				code, msg, url = d.Denial.Code, d.Denial.Message, d.Denial.PaymentURL
			}
			if code != c.wantCode || !strings.Contains(msg, c.wantMessage) || url != c.wantPayURL {
				t.Errorf("decide = %q %q payment_url %q; want %q containing %q, payment_url %q", code, msg, url, c.wantCode, c.wantMessage, c.wantPayURL)
			}
		})
	}
}

// Pause and failed invoice are part of what a state says: a change of
// either is written and announced; Merge keeps the failed invoice, which
// only invoice events learn.
func TestStateComparesPauseAndFailedInvoice(t *testing.T) {
	base := func() *State {
		return &State{Customer: "cus_1", Subscriptions: []Subscription{sub("active", "price_pro")}}
	}
	pausedSt, failedSt := base(), base()
	pausedSt.Subscriptions[0].PauseCollection = &PauseCollection{Behavior: "void"}
	failedSt.FailedInvoice = &FailedInvoice{ID: "in_1", AttemptCount: 1}
	later := base()
	later.Subscriptions[0].PauseCollection = &PauseCollection{Behavior: "void", ResumesAt: t0}
	sameLater := base()
	sameLater.Subscriptions[0].PauseCollection = &PauseCollection{Behavior: "void", ResumesAt: t0.In(time.FixedZone("x", 3600))}
	for _, c := range []struct {
		name string
		a, b *State
		want bool
	}{
		{"paused vs not", pausedSt, base(), false},
		{"failed vs not", failedSt, base(), false},
		{"resumes_at vs none", later, pausedSt, false},
		{"same instant, other zone", later, sameLater, true},
	} {
		if got := c.a.SameAs(c.b); got != c.want {
			t.Errorf("%s: SameAs = %v; want %v", c.name, got, c.want)
		}
	}
	if got := Merge(failedSt, base()); got.FailedInvoice == nil || got.FailedInvoice.ID != "in_1" {
		t.Errorf("Merge dropped the failed invoice: %+v", got.FailedInvoice)
	}
}

// prepared is the view a decision reads.
func prepared(st *State, plans *Plans) *view {
	v := newView(st, plans)
	return &v
}

// preparedGrants is the view a decision reads, with grants.
func preparedGrants(st *State, grants []Grant, plans *Plans, now time.Time) *view {
	v := newGrantedView(st, grants, plans, now)
	return &v
}
