package browser

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/tollgate-dev/tollgate/examples/internal/stack"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(stack.Main(m)) }

// A customer clicks through each app's billing page in headless Chromium:
// subscribe (Stripe's Checkout page is played by the test) → the trial is
// shown → the trial ends → upgrade preview (due now, next invoice) →
// confirm, charged as previewed → cancel → resume → pause → resume → a
// failed payment's banner. Screenshots of the trial, the preview and the
// last page are saved in the artifacts directory, and one on failure.
func TestBillingPageInChromium(t *testing.T) {
	chrome := chromium(t)
	for _, app := range []stack.App{stack.NextJS(), stack.Express(), stack.Django()} {
		t.Run(app.Name, func(t *testing.T) {
			s := stack.Start(t, app)
			b := newBrowser(t, chrome, app.Name)
			clickThrough(t, s, b, "u_browser_"+app.Name, stack.Subscriber{
				Customer: "cus_browser_" + app.Name, Subscription: "sub_browser_" + app.Name, Trial: true})
			b.screenshot(app.Name + "-ok")
		})
	}
}

func clickThrough(t *testing.T, s *stack.Stack, b *browser, user string, sub stack.Subscriber) {
	call(b, "sign in", network.SetCookie, network.SetCookieParams{Name: "tg_token", Value: s.Token(user),
		URL: s.URL, Path: "/", HTTPOnly: new(true)})
	b.do("open the billing page", chromedp.Navigate(s.URL+"/billing"), chromedp.WaitVisible(testid("checkout-starter")))
	b.do("subscribe", chromedp.Click(testid("checkout-starter")))

	// Stripe's Checkout page: the customer pays, Stripe sends the event and
	// the browser back to the success URL.
	var checkoutURL string
	select {
	case checkoutURL = <-b.stripePages:
	case <-time.After(30 * time.Second):
		b.fail("the browser never reached Stripe's Checkout page")
	}
	session := checkoutURL[strings.LastIndex(checkoutURL, "/")+1:]
	s.CompleteCheckout(session, "starter", sub)
	u := s.User(user)
	testrig.Eventually(t, "the subscription to be enforced", func() bool { return u.Get("/reports").Status == http.StatusOK })
	b.do("come back from Checkout", chromedp.Navigate(s.URL+"/billing?checkout="+session))
	b.waitText("plan", "starter")
	if got := b.text("trial"); !strings.HasPrefix(got, "14 days left in your trial") {
		b.fail(fmt.Sprintf("trial = %q; want 14 days left", got))
	}
	b.screenshot(b.name + "-trial")

	s.EndTrial(sub)
	b.reloadUntil("status", "active")
	upgrade(s, b, sub)

	b.do("cancel", chromedp.Click(testid("cancel")), chromedp.WaitVisible(testid("canceling")))
	b.do("resume", chromedp.Click(testid("resume")), chromedp.WaitVisible(testid("cancel")))
	if b.has("canceling") {
		b.fail("still canceling after resume")
	}
	b.waitText("plan", "pro")

	b.do("pause", chromedp.Click(testid("pause")), chromedp.WaitVisible(testid("paused")))
	if got := b.text("paused"); got != "Payments and access are paused until you resume." {
		b.fail(fmt.Sprintf("paused = %q; want until resumed", got))
	}
	if p := u.Get("/reports"); p.Status != http.StatusPaymentRequired {
		b.fail(fmt.Sprintf("reports while paused: %d; want 402", p.Status))
	}
	b.do("resume the pause", chromedp.Click(testid("resume")), chromedp.WaitVisible(testid("pause")))
	testrig.Eventually(t, "the reports to open again", func() bool { return u.Get("/reports").Status == http.StatusOK })

	hosted := s.FailPayment(sub, 8000)
	b.reloadUntil("status", "past_due")
	if got := b.attr("fix-payment", "href"); got != hosted {
		b.fail(fmt.Sprintf("fix your payment links to %q; want %q", got, hosted))
	}
	b.checkNoErrors()
}

// upgrade previews the switch to pro, checks what the preview shows and
// confirms it; the change charges what the preview said was due now.
func upgrade(s *stack.Stack, b *browser, sub stack.Subscriber) {
	b.do("preview the upgrade", chromedp.Click(testid("preview-pro")), chromedp.WaitVisible(testid("preview")))
	b.screenshot(b.name + "-preview")
	if got := b.text("applies"); !strings.Contains(got, "now") {
		b.fail(fmt.Sprintf("upgrade preview says %q; want it to apply now", got))
	}
	dueNow := b.text("due-now")
	if !strings.HasPrefix(dueNow, "$") || dueNow == "$0.00" {
		b.fail(fmt.Sprintf("upgrade preview due now = %q; want the prorated amount", dueNow))
	}
	if got := b.text("next-invoice"); got != "$80.00" {
		b.fail(fmt.Sprintf("upgrade preview next invoice = %q; want $80.00", got))
	}
	b.do("confirm the upgrade", chromedp.Click(testid("confirm")))
	b.waitText("plan", "pro")
	inv := s.Charged(sub)
	if inv == nil || stack.USD(inv.AmountPaid) != dueNow {
		b.fail(fmt.Sprintf("the upgrade charged %v; the preview said %s", inv, dueNow))
	}
}

// stepTimeout bounds one step of the walk on a loaded machine.
const stepTimeout = 60 * time.Second

// browser is one headless Chromium tab.
type browser struct {
	t           *testing.T
	ctx         context.Context // the tab's; steps derive their deadline from it
	name        string
	stripePages chan string // URLs of Stripe pages the tab was sent to

	mu     sync.Mutex
	errors []string // uncaught exceptions and console.error calls of the pages
}

func newBrowser(t *testing.T, chrome, name string) *browser {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1000, 1300))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, name: name, stripePages: make(chan string, 4)}
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to ctx
		stack.Missing(t, fmt.Sprintf("%s does not start: %v", chrome, err))
	}
	os.Remove(filepath.Join(artifacts(), "browser-"+name+"-failed.png")) // an earlier run's
	t.Cleanup(func() {
		if t.Failed() {
			b.screenshot(name + "-failed")
		}
	})
	go b.collectConsole(chromedp.Console(ctx))
	// Stripe's pages are not reachable from here (nor wanted): the tab gets
	// a stand-in page, and the test learns which session it was sent to.
	go b.playStripe(chromedp.Events(ctx, fetch.RequestPaused))
	call(b, "intercept Stripe's pages", fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{
		{URLPattern: "https://checkout.stripe.test/*"}, {URLPattern: "https://billing.stripe.test/*"}}})
	return b
}

func (b *browser) playStripe(paused iter.Seq2[fetch.EventRequestPaused, error]) {
	for ev, err := range paused {
		if err != nil {
			return
		}
		b.stripePages <- ev.Request.URL
		page := "<!doctype html><title>Stripe (played by the test)</title><h1>Stripe Checkout</h1><p>" + ev.Request.URL + "</p>"
		_, _ = chromedp.Call(b.ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{RequestID: ev.RequestID, ResponseCode: http.StatusOK,
			ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "text/html"}}, Body: []byte(page)})
	}
}

// collectConsole keeps the pages' uncaught exceptions and console.error
// calls (not the browser's own log, where a 403 for /favicon.ico lands).
func (b *browser) collectConsole(messages iter.Seq2[chromedp.ConsoleMessage, error]) {
	for m, err := range messages {
		if err != nil {
			return
		}
		if m.IsException() || m.Type == chromedp.ConsoleError && len(m.Args) > 0 {
			b.mu.Lock()
			b.errors = append(b.errors, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
			b.mu.Unlock()
		}
	}
}

// checkNoErrors fails the test if a page threw or logged an error (a
// hydration mismatch in Next.js, a broken script).
func (b *browser) checkNoErrors() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		b.t.Errorf("%s: %s", b.name, e)
	}
}

func (b *browser) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(fmt.Sprintf("%s: %v", step, err))
	}
}

// call sends one protocol command to the tab.
func call[P, R any](b *browser, step string, cmd cdp.Command[P, R], params P) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, cmd, params); err != nil {
		b.fail(fmt.Sprintf("%s: %v", step, err))
	}
}

// fail ends the test with the page's URL and text, for the log.
func (b *browser) fail(msg string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	url, _ := chromedp.Run(ctx, chromedp.Location())
	body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	b.t.Fatalf("%s: %s\npage %s:\n%s", b.name, msg, url, body)
}

// waitText waits until the element's text is want. The page may navigate
// meanwhile (a form post and its redirect), which ends any one evaluation,
// so each check is a fresh one.
func (b *browser) waitText(id, want string) {
	b.t.Helper()
	testrig.WaitEvery(b.t, 30*time.Second, 100*time.Millisecond, func() error {
		if got := b.text(id); got != want {
			return fmt.Errorf("%s: %s is %q; want %q", b.name, id, got, want)
		}
		return nil
	})
}

func (b *browser) text(id string) string {
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector('[data-testid=%q]')?.textContent.trim() ?? ''`, id)))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return s
}

// reloadUntil reloads the page until the element's text is want: for a
// change that reaches the page by a webhook.
func (b *browser) reloadUntil(id, want string) {
	b.t.Helper()
	testrig.WaitEvery(b.t, 30*time.Second, 500*time.Millisecond, func() error {
		b.do("reload", chromedp.Reload())
		if got := b.text(id); got != want {
			return fmt.Errorf("%s: %s is %q; want %q", b.name, id, got, want)
		}
		return nil
	})
}

func (b *browser) attr(id, name string) string {
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector('[data-testid=%q]')?.getAttribute(%q) ?? ''`, id, name)))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return s
}

func (b *browser) has(id string) bool {
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector('[data-testid=%q]') !== null`, id)))
	return ok
}

// screenshot saves the whole page as <artifacts>/browser-<name>.png.
func (b *browser) screenshot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	dir := artifacts()
	path := filepath.Join(dir, "browser-"+name+".png")
	if err := errors.Join(os.MkdirAll(dir, 0o755), os.WriteFile(path, png, 0o644)); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot: %s", path)
}

// artifacts is $TOLLGATE_ARTIFACTS, or .ci/artifacts at the repository's top.
func artifacts() string {
	if d := os.Getenv("TOLLGATE_ARTIFACTS"); d != "" {
		return d
	}
	return filepath.Join(stack.Dir(), "..", ".ci", "artifacts")
}

func testid(id string) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(`[data-testid=%q]`, id)) }

// chromium finds Debian's chromium (or $CHROME); nothing here downloads a
// browser.
func chromium(t *testing.T) string {
	for _, name := range []string{os.Getenv("CHROME"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	stack.Missing(t, "no Chromium: apt-get install chromium")
	return ""
}
