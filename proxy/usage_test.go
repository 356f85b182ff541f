package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

func TestParseUsage(t *testing.T) {
	const max = 1_000_000
	for _, c := range []struct {
		values  []string
		want    int64
		wantErr error
	}{
		{[]string{"0"}, 0, nil},
		{[]string{"5"}, 5, nil},
		{[]string{"007"}, 7, nil},
		{[]string{"1000000"}, 1_000_000, nil},
		{[]string{"1000001"}, 0, ErrUsageRange},
		{[]string{"9223372036854775807"}, 0, ErrUsageRange},
		{[]string{"9223372036854775808"}, 0, ErrUsageRange},
		{[]string{"99999999999999999999999999"}, 0, ErrUsageRange},
		{[]string{"-1"}, 0, ErrUsageSyntax},
		{[]string{"+5"}, 0, ErrUsageSyntax},
		{[]string{" 5"}, 0, ErrUsageSyntax},
		{[]string{"5 "}, 0, ErrUsageSyntax},
		{[]string{"0x10"}, 0, ErrUsageSyntax},
		{[]string{"1e3"}, 0, ErrUsageSyntax},
		{[]string{"5,6"}, 0, ErrUsageSyntax},
		{[]string{"5, 6"}, 0, ErrUsageSyntax},
		{[]string{"1_000"}, 0, ErrUsageSyntax},
		{[]string{"٣"}, 0, ErrUsageSyntax},
		{[]string{""}, 0, ErrUsageSyntax},
		{[]string{"5", "5"}, 0, ErrUsageRepeated},
		{[]string{"5", "6"}, 0, ErrUsageRepeated},
		{nil, 0, ErrUsageRepeated},
	} {
		got, err := ParseUsage(c.values, max)
		if got != c.want || !errors.Is(err, c.wantErr) {
			t.Errorf("ParseUsage(%q) = %d, %v; want %d, %v", c.values, got, err, c.want, c.wantErr)
		}
	}
}

// Whatever an upstream sends, a value is accepted only as exactly one run
// of ASCII digits no larger than the bound, and means that number.
func FuzzParseUsage(f *testing.F) {
	for _, s := range []string{"0", "1", "1000000", "1000001", "-1", "+5", " 5", "0x10", "1e3", "5,6", "",
		"9223372036854775807", "9223372036854775808", "18446744073709551616", "0000000000000000000000000001", "٣", "5\r\n6"} {
		f.Add(s, "")
	}
	f.Add("5", "5")
	f.Add("1", "2")
	f.Fuzz(func(t *testing.T, a, b string) {
		values := []string{a}
		if b != "" {
			values = append(values, b)
		}
		const max = 1_000_000
		n, err := ParseUsage(values, max)
		if err != nil {
			if n != 0 {
				t.Errorf("ParseUsage(%q) = %d with error %v; want 0", values, n, err)
			}
			return
		}
		if len(values) != 1 || a == "" || strings.Trim(a, "0123456789") != "" {
			t.Fatalf("ParseUsage(%q) = %d; want an error for anything but one run of digits", values, n)
		}
		want, perr := strconv.ParseInt(strings.TrimLeft(a, "0")+"0", 10, 64)
		want /= 10 // the appended 0 makes "" parse and keeps the value's digits
		if perr != nil || want != n || n < 0 || n > max {
			t.Errorf("ParseUsage(%q) = %d; want %d within [0, %d] (%v)", a, n, want, max, perr)
		}
	})
}

// fakeQuota records what the proxy reserves and settles.
type fakeQuota struct {
	mu       sync.Mutex
	claims   []Claim
	overruns []Claim
	settled  []settlement
	exceeded *QuotaExceeded
	err      error
}

type settlement struct{ reserved, used int64 }

func (f *fakeQuota) Reserve(_ context.Context, c Claim) (Hold, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims = append(f.claims, c)
	if f.exceeded != nil {
		return nil, f.exceeded
	}
	if f.err != nil {
		return nil, f.err
	}
	return fakeHold{f}, nil
}

func (f *fakeQuota) Overrun(c Claim) (Hold, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.overruns = append(f.overruns, c)
	return fakeHold{f}, nil
}

func (f *fakeQuota) settlements() []settlement {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]settlement(nil), f.settled...)
}

type fakeHold struct{ f *fakeQuota }

func (h fakeHold) Settle(reserved, used int64) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	h.f.settled = append(h.f.settled, settlement{reserved, used})
}

func (h fakeHold) State() QuotaState {
	return QuotaState{Limit: 50, Remaining: 7, Window: 30 * 24 * time.Hour, Reset: 90 * time.Minute}
}

// limitGate allows every request and puts a limit on the route's meter.
type limitGate struct{}

func (limitGate) Decide(context.Context, *config.Route, auth.Identity) (Decision, *HTTPError) {
	start := time.Now().Add(-time.Hour)
	return Decision{Plan: "starter", Limit: Limit{Set: true, Units: 50, PeriodStart: start, PeriodEnd: start.Add(30 * 24 * time.Hour)}}, nil
}

// meteredRig is a proxy with a metered, limited /api/** route, a recording
// counter and quota, and an upstream the test writes.
type meteredRig struct {
	*proxyRig
	counter *recordingCounter
	quota   *fakeQuota
	logs    *testrig.LogBuffer
}

const meteredToken = "Authorization: Bearer good:u1:cus_m"

var shadowOn = true

func newMeteredRig(t *testing.T, backend http.HandlerFunc) *meteredRig {
	t.Helper()
	r := &meteredRig{counter: &recordingCounter{units: map[string]int64{}}, quota: &fakeQuota{}, logs: &testrig.LogBuffer{}}
	r.proxyRig = newProxy(t, func(c *config.Config, o *Options) {
		c.Metering.Meters = map[string]*config.Meter{"calls": {EventName: "calls"}}
		c.Routes = []*config.Route{
			{Name: "reserved", Path: "/api/reserved/**", Meter: "calls", Reserve: 3},
			{Name: "shadowed", Path: "/api/shadowed/**", Meter: "calls", Reserve: 2, Shadow: &shadowOn},
			{Name: "api", Path: "/api/**", Meter: "calls"},
		}
		o.Counter, o.Quota, o.Gate = r.counter, r.quota, limitGate{}
		o.Logger = logging.New(config.Log{Level: "info", Format: "json"}, r.logs)
	}, backend)
	return r
}

func (r *meteredRig) addr() string { return r.front.Listener.Addr().String() }

// billed waits until the proxy has finished n requests, then returns what
// was counted for cus_m and how the reservations were settled.
func (r *meteredRig) billed(t *testing.T, n int32) (int64, []settlement) {
	t.Helper()
	testrig.Eventually(t, "the proxy to finish the request", func() bool { return r.served.Load() >= n })
	return r.counter.get("cus_m/calls"), r.quota.settlements()
}

// Values an upstream may send at and beyond the bounds: only one run of
// digits up to metering.max_units_per_request counts; anything else bills
// the route's default, is logged at error with the route and request id,
// and is counted in tollgate_usage_invalid_total.
func TestUsageHeaderBounds(t *testing.T) {
	r := newMeteredRig(t, func(w http.ResponseWriter, req *http.Request) {
		for _, v := range req.URL.Query()["u"] {
			w.Header().Add(HeaderUsage, v)
		}
	})
	if n := testutil.CollectAndCount(r.metrics.UsageInvalid, "tollgate_usage_invalid_total"); n != 1 {
		t.Errorf("usage_invalid_total has %d series before any answer; want 1 per meter, at 0", n)
	}
	for i, c := range []struct {
		name    string
		path    string
		values  []string
		want    int64
		invalid bool
	}{
		{"at the bound", "/api/x", []string{"1000000"}, 1_000_000, false},
		{"zero", "/api/x", []string{"0"}, 0, false},
		{"leading zeros", "/api/x", []string{"0042"}, 42, false},
		{"one above the bound", "/api/x", []string{"1000001"}, 1, true},
		{"int64 max", "/api/x", []string{"9223372036854775807"}, 1, true},
		{"overflowing int64", "/api/x", []string{"9223372036854775808"}, 1, true},
		{"negative", "/api/x", []string{"-5"}, 1, true},
		{"plus sign", "/api/x", []string{"+5"}, 1, true},
		{"hex", "/api/x", []string{"0x10"}, 1, true},
		{"garbage", "/api/x", []string{"lots"}, 1, true},
		{"empty", "/api/x", []string{""}, 1, true},
		{"comma list", "/api/x", []string{"5, 6"}, 1, true},
		{"repeated header", "/api/x", []string{"5", "6"}, 1, true},
		{"repeated, same value", "/api/x", []string{"5", "5"}, 1, true},
		{"invalid on a reserve: 3 route bills 3", "/api/reserved/x", []string{"-1"}, 3, true},
		{"absent on a reserve: 3 route bills 3", "/api/reserved/x", nil, 3, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := r.counter.get("cus_m/calls")
			invalidBefore := testutil.ToFloat64(r.metrics.UsageInvalid.WithLabelValues("calls"))
			q := ""
			for _, v := range c.values {
				q += "&u=" + urlQueryEscape(v)
			}
			rid := "req-bounds-" + strconv.Itoa(i)
			resp := rawRequest(t, r.addr(), "GET", c.path+"?x=1"+q, meteredToken, "X-Request-Id: "+rid)
			if resp.StatusCode != 200 || resp.Header.Get(HeaderUsage) != "" {
				t.Fatalf("status %d, client saw %s %q; want 200 and no usage header", resp.StatusCode, HeaderUsage, resp.Header.Get(HeaderUsage))
			}
			got, _ := r.billed(t, int32(i+1))
			if got-before != c.want {
				t.Errorf("%q billed %d; want %d", c.values, got-before, c.want)
			}
			invalid := testutil.ToFloat64(r.metrics.UsageInvalid.WithLabelValues("calls")) - invalidBefore
			logged := errorLogged(t, r.logs, rid)
			if c.invalid && (invalid != 1 || !logged) {
				t.Errorf("%q: usage_invalid_total +%v, error logged with route and request id: %v; want +1 and logged", c.values, invalid, logged)
			}
			if !c.invalid && (invalid != 0 || logged) {
				t.Errorf("%q: usage_invalid_total +%v, error logged %v; want neither", c.values, invalid, logged)
			}
		})
	}
}

func urlQueryEscape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-' {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(strconv.FormatInt(int64(c)>>4, 16)+strconv.FormatInt(int64(c)&15, 16)))
		}
	}
	return b.String()
}

// errorLogged reports an error line about X-Tollgate-Usage for request rid
// that names the route.
func errorLogged(t *testing.T, logs *testrig.LogBuffer, rid string) bool {
	t.Helper()
	for _, line := range strings.Split(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if m["level"] == "ERROR" && m["request_id"] == rid && m["route"] != nil && strings.Contains(m["msg"].(string), HeaderUsage) {
			return true
		}
	}
	return false
}

// A request on a limited route reserves before it is forwarded, and the
// answer settles the reservation exactly once: unbilled answers release it,
// billed ones settle it with their units; the answer carries the
// RateLimit fields.
func TestReservationSettledByTheAnswer(t *testing.T) {
	r := newMeteredRig(t, func(w http.ResponseWriter, req *http.Request) {
		if u := req.URL.Query().Get("u"); u != "" {
			w.Header().Set(HeaderUsage, u)
		}
		if req.URL.Query().Has("own") { // the app's own RateLimit fields
			w.Header().Set("RateLimit", `"app";r=1;t=1`)
			w.Header().Set("RateLimit-Policy", `"app";q=2;w=1`)
		}
		code, _ := strconv.Atoi(req.URL.Query().Get("status"))
		w.WriteHeader(max(code, 200))
	})
	for i, c := range []struct {
		name   string
		target string
		want   settlement
	}{
		{"billed 1", "/api/x", settlement{1, 1}},
		{"billed by the header", "/api/x?u=9", settlement{1, 9}},
		{"usage 0 releases", "/api/x?u=0", settlement{1, 0}},
		{"upstream 500 releases", "/api/x?status=500&u=9", settlement{1, 0}},
		{"upstream 404 releases", "/api/x?status=404", settlement{1, 0}},
		{"reserve: 3", "/api/reserved/x", settlement{3, 3}},
		{"reserve: 3, fewer used", "/api/reserved/x?u=2", settlement{3, 2}},
		{"the app's own RateLimit fields follow", "/api/x?own", settlement{1, 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := rawRequest(t, r.addr(), "GET", c.target, meteredToken)
			_, settled := r.billed(t, int32(i+1))
			if len(settled) != i+1 || settled[i] != c.want {
				t.Errorf("settlements %v; want #%d to be %+v, exactly once", settled, i+1, c.want)
			}
			wantPolicy, wantLimit := []string{`"calls";q=50;w=2592000`}, []string{`"calls";r=7;t=5400`}
			if strings.HasSuffix(c.target, "?own") {
				wantPolicy, wantLimit = append(wantPolicy, `"app";q=2;w=1`), append(wantLimit, `"app";r=1;t=1`)
			}
			if got := resp.Header.Values("RateLimit-Policy"); !slices.Equal(got, wantPolicy) {
				t.Errorf("RateLimit-Policy = %q; want %q", got, wantPolicy)
			}
			if got := resp.Header.Values("RateLimit"); !slices.Equal(got, wantLimit) {
				t.Errorf("RateLimit = %q; want %q", got, wantLimit)
			}
		})
	}
	r.backend.Close()
	rawRequest(t, r.addr(), "GET", "/api/x", meteredToken)
	if _, settled := r.billed(t, 9); len(settled) != 9 || settled[8] != (settlement{1, 0}) {
		t.Errorf("upstream down: settlements %v; want the reservation released", settled)
	}
}

// A request the quota cannot pay for never reaches the app: 429
// quota_exceeded with limit, used, Retry-After and the RateLimit fields.
func TestQuotaExceededNeverForwarded(t *testing.T) {
	r := newMeteredRig(t, nil)
	r.quota.exceeded = &QuotaExceeded{Limit: 50, Used: 50, RetryAfter: 1500 * time.Millisecond,
		State: QuotaState{Limit: 50, Remaining: 0, Window: time.Hour, Reset: 2 * time.Minute}}
	resp := rawRequest(t, r.addr(), "GET", "/api/x", meteredToken)
	var body struct {
		Error       struct{ Code string }
		Limit, Used int64
	}
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 429 || body.Error.Code != "quota_exceeded" || body.Limit != 50 || body.Used != 50 {
		t.Errorf("over quota: %d %+v; want 429 quota_exceeded, limit 50, used 50", resp.StatusCode, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "2" {
		t.Errorf("Retry-After = %q; want 2 (1.5 s rounded up)", ra)
	}
	if p, rl := resp.Header.Get("RateLimit-Policy"), resp.Header.Get("RateLimit"); p != `"calls";q=50;w=3600` || rl != `"calls";r=0;t=120` {
		t.Errorf("RateLimit-Policy %q, RateLimit %q; want \"calls\";q=50;w=3600 and \"calls\";r=0;t=120", p, rl)
	}
	if n := len(r.backend.requests()); n != 0 {
		t.Errorf("the app saw %d requests; want none", n)
	}
	if got, _ := r.billed(t, 1); got != 0 {
		t.Errorf("a refused request billed %d", got)
	}
}

// Quota bypass through shadow mode: a request a shadowed route forwards
// over the quota is billed and counted against the quota as an overrun
// (reserved 0), so that enforcing routes count it; an enforcing route on
// the same meter still answers 429 and takes no overrun.
func TestShadowedOverQuotaIsAnOverrun(t *testing.T) {
	r := newMeteredRig(t, func(w http.ResponseWriter, req *http.Request) { w.Header().Set(HeaderUsage, "5") })
	r.quota.exceeded = &QuotaExceeded{Limit: 50, Used: 50, RetryAfter: time.Second}
	resp := rawRequest(t, r.addr(), "GET", "/api/shadowed/x", meteredToken)
	if resp.StatusCode != 200 {
		t.Fatalf("shadowed route over quota: %d; want 200", resp.StatusCode)
	}
	if seen := r.backend.requests(); len(seen) != 1 || seen[0].Header.Get(HeaderShadowDenial) != "quota_exceeded" {
		t.Fatalf("the app saw %d requests (%v); want 1 with %s: quota_exceeded", len(seen), seen, HeaderShadowDenial)
	}
	got, settled := r.billed(t, 1)
	if got != 5 || !slices.Equal(settled, []settlement{{0, 5}}) {
		t.Errorf("billed %d, settlements %v; want 5 billed and settled as an overrun {0 5}", got, settled)
	}
	r.quota.mu.Lock()
	overruns := append([]Claim(nil), r.quota.overruns...)
	r.quota.mu.Unlock()
	if len(overruns) != 1 || overruns[0].Customer != "cus_m" || overruns[0].Meter != "calls" || overruns[0].Units != 2 || !overruns[0].Limit.Set {
		t.Errorf("overruns %+v; want one for cus_m on calls, 2 units, with the gate's limit", overruns)
	}

	if resp := rawRequest(t, r.addr(), "GET", "/api/x", meteredToken); resp.StatusCode != 429 {
		t.Errorf("enforcing route over quota: %d; want 429", resp.StatusCode)
	}
	r.quota.mu.Lock()
	defer r.quota.mu.Unlock()
	if len(r.quota.overruns) != 1 {
		t.Errorf("the enforcing route's refusal took an overrun: %+v", r.quota.overruns)
	}
}

// A quota that cannot be checked fails closed (503), unless the route says
// fail_open, which forwards and bills without a reservation.
func TestQuotaUnavailable(t *testing.T) {
	r := newMeteredRig(t, nil)
	r.quota.err = errors.New("store down")
	if resp := rawRequest(t, r.addr(), "GET", "/api/x", meteredToken); resp.StatusCode != 503 || errorCode(t, resp) != "entitlements_unavailable" {
		t.Errorf("quota unavailable: %d; want 503 entitlements_unavailable", resp.StatusCode)
	}
	if n := len(r.backend.requests()); n != 0 {
		t.Errorf("the app saw %d requests; want none", n)
	}
}

// streamStep is one moment of a streamed answer the backend writes.
type streamBackend struct {
	header  http.Header // set before the first byte
	trailer http.Header // set after the body; nil: none sent
	declare bool        // Trailer: X-Tollgate-Usage
	hang    bool        // after the first chunk, wait for the client to go away
	before  bool        // hang before the answer's header
	arrived chan struct{}
}

func (b *streamBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	close(b.arrived)
	if b.before {
		<-r.Context().Done()
		return
	}
	for k, vv := range b.header {
		w.Header()[k] = vv
	}
	if b.declare {
		w.Header().Set("Trailer", HeaderUsage)
	}
	io.WriteString(w, "data: first\n\n")
	w.(http.Flusher).Flush()
	if b.hang {
		<-r.Context().Done()
		return
	}
	io.WriteString(w, "data: last\n\n")
	for k, vv := range b.trailer {
		w.Header()[k] = vv
	}
}

// Billed for what was served: header usage counts when the header
// arrives, trailer usage when the upstream's body ends, and a client that
// aborts pays what was declared so far, or the route's default; never
// nothing. The trailer never reaches the client.
func TestStreamsBilledForWhatWasServed(t *testing.T) {
	u := func(v ...string) http.Header { return http.Header{HeaderUsage: v} }
	for _, c := range []struct {
		name  string
		b     streamBackend
		abort bool // the client goes away after the first chunk (or, with b.before, at once)
		want  int64
	}{
		{"client aborts before the answer", streamBackend{before: true}, true, 1},
		{"client aborts mid-stream after header usage", streamBackend{header: u("7"), hang: true}, true, 7},
		{"client aborts mid-stream, trailer declared, not sent", streamBackend{declare: true, hang: true}, true, 1},
		{"client aborts mid-stream, header usage and trailer declared", streamBackend{header: u("3"), declare: true, hang: true}, true, 3},
		{"trailer usage counted at the body's end", streamBackend{declare: true, trailer: u("42")}, false, 42},
		{"header and trailer usage add", streamBackend{header: u("2"), declare: true, trailer: u("40")}, false, 42},
		{"trailer declared, never sent", streamBackend{declare: true}, false, 1},
		{"trailer beyond the bound with the header", streamBackend{header: u("999999"), declare: true, trailer: u("2")}, false, 1_000_000},
		{"repeated trailer", streamBackend{declare: true, trailer: u("5", "6")}, false, 1},
		{"undeclared trailer is not billed", streamBackend{trailer: http.Header{http.TrailerPrefix + HeaderUsage: {"50"}}}, false, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := c.b
			b.arrived = make(chan struct{})
			r := newMeteredRig(t, b.ServeHTTP)
			conn, err := net.Dial("tcp", r.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, "GET /api/stream HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n"+meteredToken+"\r\n\r\n")
			<-b.arrived
			var raw string
			if c.abort {
				if !b.before {
					br := bufio.NewReader(conn)
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatal(err)
					}
					line, err := bufio.NewReader(resp.Body).ReadString('\n')
					if err != nil || line != "data: first\n" {
						t.Fatalf("first event = %q, %v", line, err)
					}
				}
				conn.Close() // the client goes away
			} else {
				all, _ := io.ReadAll(conn)
				raw = string(all)
				if !strings.Contains(raw, "data: last") {
					t.Fatalf("answer incomplete:\n%s", raw)
				}
			}
			got, settled := r.billed(t, 1)
			if got != c.want {
				t.Errorf("billed %d; want %d", got, c.want)
			}
			if len(settled) != 1 || settled[0] != (settlement{1, c.want}) {
				t.Errorf("settlements %v; want one of {1 %d}", settled, c.want)
			}
			if strings.Contains(strings.ToLower(raw), "x-tollgate") {
				t.Errorf("the usage trailer or its declaration reached the client:\n%s", raw)
			}
		})
	}
}

// A request tollgate itself cuts off at shutdown (server.shutdown_timeout
// ran out) before the app answered is not billed as a client abort.
func TestRequestCutOffAtShutdownNotBilled(t *testing.T) {
	arrived := make(chan struct{})
	r := newMeteredRig(t, func(w http.ResponseWriter, req *http.Request) {
		close(arrived)
		<-req.Context().Done()
	})
	conn, err := net.Dial("tcp", r.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /api/x HTTP/1.1\r\nHost: x\r\n"+meteredToken+"\r\n\r\n")
	<-arrived
	r.cut(ErrShuttingDown)
	if got, settled := r.billed(t, 1); got != 0 || len(settled) != 1 || settled[0] != (settlement{1, 0}) {
		t.Errorf("cut off at shutdown: billed %d, settlements %v; want nothing billed and the reservation released", got, settled)
	}
}

// An upstream that breaks off a streamed answer before its usage trailer
// still bills what it declared, or the route's default.
func TestStreamBrokenByTheUpstream(t *testing.T) {
	r := newMeteredRig(t, func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Trailer", HeaderUsage)
		w.Header().Set(HeaderUsage, "4")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the app dies mid-stream
	})
	conn, err := net.Dial("tcp", r.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /api/stream HTTP/1.1\r\nHost: x\r\n"+meteredToken+"\r\n\r\n")
	io.ReadAll(conn)
	if got, settled := r.billed(t, 1); got != 4 || len(settled) != 1 {
		t.Errorf("billed %d, settlements %v; want the 4 units declared, settled once", got, settled)
	}
}

// A WebSocket on a metered route is billed the route's units once, at the
// 101, however long the connection then lasts.
func TestWebSocketBilledOnceAt101(t *testing.T) {
	r := newMeteredRig(t, func(w http.ResponseWriter, req *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(conn, "echo "+line)
		}
	})
	conn, err := net.Dial("tcp", r.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /api/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+meteredToken+"\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade = %v, %v; want 101", resp, err)
	}
	if got := r.counter.get("cus_m/calls"); got != 1 {
		t.Errorf("at the 101: billed %d; want 1", got)
	}
	for i := range 3 {
		io.WriteString(conn, "m"+strconv.Itoa(i)+"\n")
		if line, err := br.ReadString('\n'); err != nil || line != "echo m"+strconv.Itoa(i)+"\n" {
			t.Fatalf("frame %d = %q, %v", i, line, err)
		}
	}
	conn.Close()
	if got, settled := r.billed(t, 1); got != 1 || len(settled) != 1 || settled[0] != (settlement{1, 1}) {
		t.Errorf("after the WebSocket closed: billed %d, settlements %v; want 1, once", got, settled)
	}
}
