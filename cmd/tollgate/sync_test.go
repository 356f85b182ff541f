package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestSyncCommand(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	d := testrig.NewStripeDouble(t)
	d.PutCustomer(&stripe.Customer{ID: "cus_s1"})
	d.PutSubscription(&stripe.Subscription{ID: "sub_s1", Status: "active", Customer: &stripe.Customer{ID: "cus_s1"},
		CurrentPeriodEnd: time.Now().Add(time.Hour).Unix(),
		Items:            &stripe.SubscriptionItemList{Data: []*stripe.SubscriptionItem{{ID: "si_1", Price: &stripe.Price{ID: "price_1"}}}}})
	cfgPath := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
upstream: http://127.0.0.1:3000
redis: { url: %q, prefix: "s:" }
stripe: { secret_key: sk_test_x, api_base: %q }
auth: { jwt: { algorithms: [HS256], audience: [api], hmac_secret: %q } }
routes: [ { path: /**, auth: none } ]
billing: { prefix: "" }
`, rd.URL(), d.URL(), strings.Repeat("k", 32))), 0o600)

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"sync", "-config", cfgPath}, &out, &errOut); code != 0 {
		t.Fatalf("sync exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "1 customers checked, 1 repaired, 0 failed") {
		t.Errorf("output = %q", out.String())
	}
	raw, err := rd.Client().Get(context.Background(), "s:{cus_s1}:state").Result()
	if err != nil || !strings.Contains(raw, `"status":"active"`) {
		t.Errorf("stored state = %q, %v", raw, err)
	}
}

func TestSyncNeedsAStripeKey(t *testing.T) {
	t.Setenv("TOLLGATE_TEST_HMAC", strings.Repeat("h", 32))
	var out bytes.Buffer
	if code := run(context.Background(), []string{"sync", "-config", "testdata/good.yaml"}, &out, &out); code != 1 || !strings.Contains(out.String(), "stripe.secret_key is required") {
		t.Errorf("exit %d: %s", code, out.String())
	}
}
