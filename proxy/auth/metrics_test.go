package auth

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate-dev/tollgate/internal/testrig"
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

// A JWKS endpoint that fails is visible before anyone reads the logs: the
// failures are counted, the success timestamp stays 0 until a fetch
// succeeds, then carries the wall time of that fetch.
func TestJWKSFetchMetrics(t *testing.T) {
	fetches := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f", Help: "h"}, []string{"result"})
	last := prometheus.NewGauge(prometheus.GaugeOpts{Name: "l", Help: "h"})
	srv := newJWKSServer(t, jwksJSON(t, jwk{"a", "RS256", &rsaKey().PublicKey}))
	srv.set("500", nil)
	o := Options{
		Algorithms:  []string{"RS256"},
		Audience:    []string{testAudience},
		JWKSURL:     srv.URL,
		JWKSRefresh: 20 * time.Millisecond,
		Now:         newClock(t0).Now,
		Logger:      quietLogger(),
		JWKSFetches: fetches, JWKSLastSuccess: last,
	}
	v := newVerifier(t, o)
	failed, ok := fetches.WithLabelValues("failed"), fetches.WithLabelValues("ok")
	testrig.Eventually(t, "two failed fetches counted", func() bool { return testutil.ToFloat64(failed) >= 2 })
	if got := testutil.ToFloat64(ok); got != 0 {
		t.Errorf("ok fetches while the endpoint fails = %v; want 0", got)
	}
	if got := testutil.ToFloat64(last); got != 0 {
		t.Errorf("last success before any = %v; want 0", got)
	}
	before := time.Now()
	srv.set("ok", nil)
	testrig.Eventually(t, "Ready", v.Ready)
	after := time.Now()
	if got := testutil.ToFloat64(ok); got < 1 {
		t.Errorf("ok fetches after recovery = %v; want >= 1", got)
	}
	got := testutil.ToFloat64(last)
	if got < float64(before.Unix()) || got > float64(after.Unix()+1) {
		t.Errorf("last success = %v; want between %d and %d", got, before.Unix(), after.Unix()+1)
	}
}
