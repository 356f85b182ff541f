package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// checkScript returns the path of scripts/name after checking its syntax
// (bash -n) and that -h prints help containing want; it skips the test
// when bash or one of tools is missing.
func checkScript(t *testing.T, name, want string, tools ...string) string {
	t.Helper()
	for _, tool := range append([]string{"bash"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	script := "../../../scripts/" + name
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n %s: %v\n%s", name, err, out)
	}
	if out, err := exec.Command("bash", script, "-h").CombinedOutput(); err != nil || !strings.Contains(string(out), want) {
		t.Fatalf("%s -h = %v; want help containing %q\n%s", name, err, want, out)
	}
	return script
}

// outputHas fails t unless out, what's output, contains every one of wants.
func outputHas(t *testing.T, what string, out []byte, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(string(out), want) {
			t.Errorf("%s output lacks %q:\n%s", what, want, out)
		}
	}
}

// The script is not run by CI (too slow and load-sensitive), so at least
// its syntax and its help are checked on every test run.
func TestBenchCompareScriptParses(t *testing.T) {
	script := checkScript(t, "bench-compare.sh", "-rounds N")
	out, err := exec.Command("bash", script, "-rounds", "0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "-rounds must be 1..20") {
		t.Fatalf("bench-compare.sh -rounds 0 = %v, want a refusal naming the flag\n%s", err, out)
	}
}

// scripts/perf-scale.sh is not run by CI either (it needs perf and a
// quiet machine): its syntax, its help and its refusal of an unknown flag
// are checked, and its analyser (scripts/perf-loop.py) is run on samples
// in perf script's format whose answer is known: only samples under the
// measured loop count, the loop's bookkeeping does not, and each sample
// goes to the step below the loop and the function it is in.
func TestPerfScaleScript(t *testing.T) {
	script := checkScript(t, "perf-scale.sh", "-n 3000000", "python3")
	if out, err := exec.Command("bash", script, "-x").CombinedOutput(); err == nil || !strings.Contains(string(out), "unknown flag -x") {
		t.Fatalf("perf-scale.sh -x = %v, want a refusal naming the flag\n%s", err, out)
	}
	const loop = "\t  7d5748 github.com/tollgate-dev/tollgate/internal/sidecar.BenchmarkCachedPathScale.func1+0x28 (/x/sidecar.test)\n"
	sample := func(frames ...string) string {
		s := "sidecar.test 9404 291.4:     500000 cpu-clock: \n"
		for _, f := range frames {
			s += "\t  6fc717 " + f + "+0x1f (/x/sidecar.test)\n"
		}
		return s + loop + "\t  93e21 runtime.goexit.abi0+0x1 (/x/sidecar.test)\n\n"
	}
	in := sample("github.com/tollgate-dev/tollgate/proxy/auth.sameToken", "github.com/tollgate-dev/tollgate/proxy/auth.(*Verifier).Authenticate") +
		sample("github.com/tollgate-dev/tollgate/proxy/auth.(*tokenCache).get", "github.com/tollgate-dev/tollgate/proxy/auth.(*Verifier).Authenticate") +
		sample("runtime.mapaccess1", "github.com/tollgate-dev/tollgate/meter.(*Meter).Count") +
		sample("github.com/tollgate-dev/tollgate/internal/sidecar.warm") + // bookkeeping
		"sidecar.test 9404 291.5:     500000 cpu-clock: \n\t  1 runtime.mallocgc+0x1 (/x/sidecar.test)\n\t  2 runtime.goexit.abi0+0x1 (/x/sidecar.test)\n\n" // setup
	cmd := exec.Command("python3", "../../../scripts/perf-loop.py")
	cmd.Stdin = strings.NewReader(in)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("perf-loop.py: %v\n%s", err, out)
	}
	outputHas(t, "perf-loop.py", out,
		"3 samples in the measured loop",
		" 66.67%  auth.(*Verifier).Authenticate\n",
		" 33.33%  meter.(*Meter).Count\n",
		" 33.33%  auth.(*Verifier).Authenticate  auth.sameToken\n",
		" 33.33%  meter.(*Meter).Count  runtime.mapaccess1\n")
	if strings.Contains(string(out), "warm") || strings.Contains(string(out), "mallocgc") {
		t.Errorf("perf-loop.py counted a sample outside the path:\n%s", out)
	}

	// When the path's closure is not inlined into the loop, its steps are
	// inlined into it: a sample's step is told by the package of what the
	// closure called.
	const path = "github.com/tollgate-dev/tollgate/internal/sidecar.inProcessPath.func1"
	in = sample("github.com/tollgate-dev/tollgate/proxy/auth.sameToken", path) +
		sample("runtime.memeqbody", "github.com/tollgate-dev/tollgate/meter.(*Quotas).share", path) +
		sample("github.com/tollgate-dev/tollgate/meter.(*Meter).CountMemo", path) +
		sample("github.com/tollgate-dev/tollgate/entitlements.(*Gate).cached", path) +
		sample("runtime.mapaccess2_fast64", path) +
		sample(path)
	cmd = exec.Command("python3", "../../../scripts/perf-loop.py")
	cmd.Stdin = strings.NewReader(in)
	if out, err = cmd.CombinedOutput(); err != nil {
		t.Fatalf("perf-loop.py: %v\n%s", err, out)
	}
	outputHas(t, "perf-loop.py", out,
		"6 samples in the measured loop",
		" 16.67%  token\n", " 16.67%  reservation\n", " 16.67%  count\n", " 16.67%  decision\n",
		" 16.67%  other: runtime.mapaccess2_fast64\n", " 16.67%  the path's closure\n",
		" 16.67%  reservation  runtime.memeqbody\n")
}

// scripts/callgrind-groups.py groups the self cost of the functions in
// callgrind profiles into the rows of docs/performance.md's "Where the
// instructions go". It is run on a profile in callgrind's format whose
// answer is known: a call's inclusive cost (the line after calls=) is not
// its caller's own, compressed names (defined by fn= or cfn=, used by id
// later) resolve, and each function lands in its row.
func TestCallgrindGroupsScript(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3")
	}
	profile := filepath.Join(t.TempDir(), "cg.out")
	const cg = `# callgrind format
version: 1
positions: line
events: Ir

ob=(1) /x/tollgate
fl=(1) /src/proxy/server.go
fn=(1) github.com/tollgate-dev/tollgate/proxy.(*Server).ServeHTTP
10 3000
+2 1000
cfl=(2) /go/src/net/textproto/reader.go
cfn=(2) net/textproto.readMIMEHeader
calls=1 50
12 9000000
* 1000
fl=(2)
fn=(2)
50 6000
fn=(3) runtime.mallocgc
7 2000
fn=(4) slices.pdqsortCmpFunc[go.shape.struct { net/http.key string; net/http.values []string }]
1 400
fn=(5) runtime.selectgo
1 600
fn=(6) net/http/httputil.(*ReverseProxy).ServeHTTP
1 1000
fn=(1)
+3 2000

totals: 21000
`
	if err := os.WriteFile(profile, []byte(cg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("python3", "../../../scripts/callgrind-groups.py", "-n", "2", "-own", "t="+profile).CombinedOutput()
	if err != nil {
		t.Fatalf("callgrind-groups.py: %v\n%s", err, out)
	}
	// Each row's figure, per request: 7,000 of tollgate's own over 2
	// requests (not the call's 9,000,000), readMIMEHeader's 6,000 and the
	// header sort's 400, and so on.
	outputHas(t, "callgrind-groups.py", out,
		"| tollgate's own code (path, route, token cache, link, decision, reservation, count, settle, "+
			"access line, metric calls, `hash/maphash`) | 3.5 k |\n",
		"| writing and parsing headers (`net/http`, `net/textproto`, `bufio`, `httpguts`: canonicalise, "+
			"sort, validate, escape, write, parse) | 3.2 k |\n",
		"| hash maps and hashing (header maps, caches) | 0.0 k |\n",
		"| allocation | 1.0 k |\n",
		"| scheduling, channels, locks, system calls, the network poller, copying | 0.3 k |\n",
		"| the rest (`net/http` request and connection handling, `ReverseProxy`, contexts, URLs) | 0.5 k |\n",
		"| **total** | **8.5 k** |\n",
		"     3500  github.com/tollgate-dev/tollgate/proxy.(*Server).ServeHTTP\n")
	for _, bad := range [][]string{{"-x", "t=" + profile}, {"nolabel"}, {"-n", "0", "t=" + profile}} {
		out, err := exec.Command("python3", append([]string{"../../../scripts/callgrind-groups.py"}, bad...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "error: ") || !strings.Contains(string(out), bad[0]) {
			t.Errorf("callgrind-groups.py %q = %v; want a refusal naming the argument\n%s", bad, err, out)
		}
	}
}

func TestTargetSendsTheSameBytes(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Host+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write(answer)
	}))
	defer srv.Close()
	tg, err := newTarget(srv.URL+"/api/bench", headers{"Host: bench.invalid", "Authorization: Bearer a.b.c"})
	if err != nil {
		t.Fatal(err)
	}
	want := "GET /api/bench HTTP/1.1\r\nHost: bench.invalid\r\nAuthorization: Bearer a.b.c\r\n\r\n"
	if string(tg.req) != want {
		t.Errorf("request = %q; want %q", tg.req, want)
	}
	c := &conn{t: tg}
	defer c.close()
	for range 3 {
		if status, err := c.do(); err != nil || status != 200 {
			t.Fatalf("do = %d, %v; want 200", status, err)
		}
	}
	for _, s := range seen {
		if s != "bench.invalid /api/bench Bearer a.b.c" {
			t.Errorf("upstream saw %q", s)
		}
	}
	if len(answer) != 100 {
		t.Errorf("answer is %d bytes; want 100", len(answer))
	}
}

func TestOpenLoopMeasuresFromTheSchedule(t *testing.T) {
	// A target that stalls every request 20 ms, with one connection, at
	// 200/s: each request waits for the ones before it, so latencies from
	// the schedule grow far past 20 ms. A closed-loop tool would report
	// 20 ms (coordinated omission).
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
	}))
	defer srv.Close()
	tg, err := newTarget(srv.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := schedule(tg, 200, 500*time.Millisecond, 0, 1)
	if r.failed != 0 {
		t.Fatalf("failed = %d (%v)", r.failed, r.firstErr)
	}
	if got := r.lat[len(r.lat)-1]; got < 500*time.Millisecond {
		t.Errorf("max latency = %s; want it to include the queueing behind the stalls (> 500ms)", got)
	}
}

func TestReportPairsRounds(t *testing.T) {
	rs := []record{
		{"round": "1", "target": "bare", "rps": "1000"},
		{"round": "1", "target": "tollgate", "rps": "900"},
		{"round": "2", "target": "bare", "rps": "2000"},
		{"round": "2", "target": "tollgate", "rps": "2000"},
		{"round": "3", "target": "bare", "rps": "500"},
		{"round": "3", "target": "tollgate", "rps": "475"},
	}
	got := median(paired(rs, "tollgate", "bare", "rps"))
	if got != 0.95 {
		t.Errorf("median paired ratio = %v; want 0.95 (0.90, 1.00, 0.95)", got)
	}
	var b bytes.Buffer
	closedTable(&b, rs, []record{{"target": "bare", "n": "10", "ir": "1000000"}, {"target": "tollgate", "n": "10", "ir": "1100000"}}, "bare")
	if !strings.Contains(b.String(), "| tollgate | 0.95 | 0.90–1.00 |") || !strings.Contains(b.String(), "| 110.0 k | 1.10 |") {
		t.Errorf("table:\n%s", b.String())
	}
}

// Two runs' rounds files, given together, pair each round within its own
// run: round 1 of the second run is not paired with round 1 of the first.
func TestReportJoinsRuns(t *testing.T) {
	dir := t.TempDir()
	one, two := filepath.Join(dir, "r1.txt"), filepath.Join(dir, "r2.txt")
	os.WriteFile(one, []byte("round=1 target=bare rps=1000\nround=1 target=tollgate rps=900\n"), 0o600)
	os.WriteFile(two, []byte("round=1 target=bare rps=2000\nround=1 target=tollgate rps=2000\n"), 0o600)
	var b bytes.Buffer
	if err := runReport([]string{"-rounds", one + "," + two}, &b); err != nil {
		t.Fatal(err)
	}
	// Paired within runs: 900/1000 and 2000/2000, median 0.95. Read as one
	// run, both files' round 1 would pair with a single bare measurement.
	if !strings.Contains(b.String(), "| tollgate | 0.95 | 0.90–1.00 |") {
		t.Errorf("report:\n%s", b.String())
	}
}

// scripts/bench-ab.sh refuses what it cannot run, naming what is wrong,
// and, run for real on a small benchmark with the same revision as both
// builds, prints each round and a median ratio.
func TestBenchABScript(t *testing.T) {
	script := checkScript(t, "bench-ab.sh", "-bench REGEX BASE [NEW]", "git", "go")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-x"}, "unknown flag -x"},
		{[]string{"HEAD"}, "-bench REGEX is required"},
		{[]string{"-bench", "X"}, "want BASE [NEW] revisions"},
		{[]string{"-rounds", "0", "-bench", "X", "HEAD"}, "-rounds 0: want a whole number"},
		{[]string{"-bench", "X", "no-such-revision-here"}, "no-such-revision-here is not a revision"},
		{[]string{"-bench"}, "-bench needs a value"},
	} {
		out, err := exec.Command("bash", append([]string{script}, c.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("bench-ab.sh %v = %v; want a refusal saying %q\n%s", c.args, err, c.want, out)
		}
	}
	if testing.Short() {
		return
	}
	if err := exec.Command("git", "-C", "../../..", "rev-parse", "--verify", "-q", "HEAD").Run(); err != nil {
		t.Skip("not in a git checkout")
	}
	// Run as the docs run it: by its path, so it must be executable. The
	// logging benchmarks do not wait for each other (benchBarrier is the
	// sidecar's): refused, unless told to run anyway.
	args := []string{"-rounds", "2", "-benchtime", "200x", "-pkg", "./internal/logging/", "-bench", "BenchmarkPlain$", "HEAD"}
	out, err := exec.Command(script, args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "do not wait for each other") {
		t.Fatalf("bench-ab.sh without a barrier = %v; want a refusal\n%s", err, out)
	}
	out, err = exec.Command(script, append([]string{"-no-barrier"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("bench-ab.sh: %v\n%s", err, out)
	}
	for _, want := range []string{"round 1: base ", "round 2: base ", " new/base ", "median new/base over 2 rounds: "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
