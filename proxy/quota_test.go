package proxy

import (
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"
)

// seconds rounds up to whole seconds exactly as math.Ceil of the float
// seconds did, without the float: at whole seconds, a nanosecond either
// side, and at random durations up to a century; never negative.
func TestSeconds(t *testing.T) {
	ds := []time.Duration{math.MinInt64, -time.Hour, -1, 0, 1, time.Second - 1, time.Second, time.Second + 1,
		90 * time.Minute, 30 * 24 * time.Hour, 30*24*time.Hour + 1}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		ds = append(ds, time.Duration(rng.Int64N(int64(100*365*24*time.Hour))))
	}
	for _, d := range ds {
		want := max(0, int64(math.Ceil(d.Seconds())))
		if got := seconds(d); got != want {
			t.Fatalf("seconds(%d) = %d; want %d", d, got, want)
		}
	}
	if got, want := seconds(math.MaxInt64), int64(math.MaxInt64/int64(time.Second))+1; got != want {
		t.Errorf("seconds(MaxInt64) = %d; want %d", got, want)
	}
}

// A route's RateLimit fields follow the state though the policy value is
// kept between answers: a caller with another limit or window gets its
// own policy, the next caller with the first one the first again, and an
// Add to one answer's policy (the app's own) changes no other answer's.
func TestRateFieldsFollowTheState(t *testing.T) {
	f := newRateFields("calls")
	cases := []struct {
		st            QuotaState
		policy, limit string
	}{
		{QuotaState{Limit: 50, Remaining: 7, Window: 30 * 24 * time.Hour, Reset: 90 * time.Minute}, `"calls";q=50;w=2592000`, `"calls";r=7;t=5400`},
		{QuotaState{Limit: 50, Remaining: 6, Window: 30 * 24 * time.Hour, Reset: 90*time.Minute - 1}, `"calls";q=50;w=2592000`, `"calls";r=6;t=5400`},
		{QuotaState{Limit: 500, Remaining: 499, Window: 30 * 24 * time.Hour, Reset: time.Hour}, `"calls";q=500;w=2592000`, `"calls";r=499;t=3600`},
		{QuotaState{Limit: 500, Remaining: 0, Window: 7 * 24 * time.Hour, Reset: time.Second}, `"calls";q=500;w=604800`, `"calls";r=0;t=1`},
		{QuotaState{Limit: 50, Remaining: -3, Window: 30 * 24 * time.Hour, Reset: -time.Second}, `"calls";q=50;w=2592000`, `"calls";r=0;t=0`},
	}
	var answers []http.Header
	for i, c := range cases {
		h := http.Header{}
		f.set(h, c.st, &exchange{})
		if got := h.Values("RateLimit-Policy"); !slices.Equal(got, []string{c.policy}) {
			t.Errorf("state %d: RateLimit-Policy = %q; want [%s]", i, got, c.policy)
		}
		if got := h.Values("RateLimit"); !slices.Equal(got, []string{c.limit}) {
			t.Errorf("state %d: RateLimit = %q; want [%s]", i, got, c.limit)
		}
		// A denial's fields are the same.
		d := quotaDenial("calls", f, &QuotaExceeded{State: c.st}).Header
		if !slices.Equal(d.Values("RateLimit-Policy"), []string{c.policy}) || !slices.Equal(d.Values("RateLimit"), []string{c.limit}) {
			t.Errorf("state %d: the denial has %q; want %s and %s", i, d, c.policy, c.limit)
		}
		h.Add("RateLimit-Policy", `"app";q=2;w=1`)
		answers = append(answers, h)
	}
	for i, h := range answers {
		if got, want := h.Values("RateLimit-Policy"), []string{cases[i].policy, `"app";q=2;w=1`}; !slices.Equal(got, want) {
			t.Errorf("answer %d: RateLimit-Policy = %q after the others; want %q", i, got, want)
		}
	}
	if got, want := newRateFields(`na me"`).quoted, `"na me\""`; got != want {
		t.Errorf("quoted meter %s; want %s", got, want)
	}
}
