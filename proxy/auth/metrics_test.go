package auth

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// TestValidationsMetric checks that every Authenticate call is counted once
// under its result, and that all results exist from zero.
func TestValidationsMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_jwt_validations_total",
		Help: "JWT validations by result.",
	}, []string{"result"})
	reg.MustRegister(vec)
	clock := newClock(t0)
	o := hmacOptions(clock)
	o.Validations = vec
	v := newVerifier(t, o)

	ok := sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(t0))
	expired := sign(t, jwt.SigningMethodHS256, testSecret, with(claimsAt(t0), "exp", t0.Add(-time.Second).Unix()))
	for _, r := range []string{ok, ok, expired} {
		v.Authenticate(bearer(r))
	}
	v.Authenticate(httptest.NewRequest("GET", "/", nil))

	want := map[string]float64{ReasonOK: 2, ReasonExpired: 1, ReasonMissing: 1, ReasonBadSignature: 0}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if len(got) != len(allReasons) {
		t.Errorf("%d result series; want %d (one per reason, from zero)", len(got), len(allReasons))
	}
	for reason, n := range want {
		if got[reason] != n {
			t.Errorf("validations{result=%q} = %v; want %v", reason, got[reason], n)
		}
	}
}
