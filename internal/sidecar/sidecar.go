// Package sidecar wires tollgate's parts into one running process: the store,
// the authenticator, the proxy listener and the admin listener, with
// readiness and graceful shutdown. cmd/tollgate's serve and demo both run it.
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/stripeapi"
	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/proxy"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// Sidecar is one tollgate process.
type Sidecar struct {
	cfg      *config.Config
	log      *slog.Logger
	Metrics  *metrics.Metrics
	Store    *store.Store
	Stripe   *client.API // every Stripe call goes through this one client
	verifier *auth.Verifier
	// Customers is the shared customer state; Gate decides from it.
	Customers  entitlements.Store
	Gate       *entitlements.Gate
	reconciler *entitlements.Reconciler // nil without a Stripe key
	meter      meterService             // nil when no meters are configured
	quotas     *meter.Quotas            // nil when no plan limits a meter
	seats      *seatGate                // nil when no plan limits seats
	now        func() time.Time
	handler    *proxy.Server

	proxyLn, adminLn net.Listener
	proxySrv         *http.Server
	// cutRequests cancels every proxy request's context with
	// proxy.ErrShuttingDown when shutdown runs out of time, so that
	// requests tollgate cuts off are not billed as client aborts.
	cutRequests context.CancelCauseFunc
	adminSrv    *http.Server
	draining    atomic.Bool
}

// Options adjust a Sidecar beyond its configuration (tests, demo).
type Options struct {
	Logger *slog.Logger
	// Now is the clock used for token checks and to place the month the
	// periodic usage reconciliation checks; nil means time.Now.
	Now func() time.Time
	// Transport carries requests to the upstream; nil means one built from
	// the proxy section (benchmarks put an in-memory upstream here).
	Transport http.RoundTripper
}

// New builds every part from a validated configuration. Nothing listens yet.
func New(ctx context.Context, cfg *config.Config, o Options) (*Sidecar, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Sidecar{cfg: cfg, log: log, Metrics: metrics.New(), now: o.Now}
	if cfg.Metrics.PerCustomer {
		s.Metrics.EnablePerCustomer()
	}
	initOperatorMetrics(s.Metrics, cfg)
	initLifecycleMetrics(s.Metrics, cfg)
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if s.Store, err = store.Open(cfg.Redis, log); err != nil {
		return nil, err
	}
	s.Stripe = stripeapi.New(cfg.Stripe, s.Metrics, log)
	customers := entitlements.NewRedisStore(s.Store)
	s.Customers = observeTrials(customers, cfg, s.Metrics, log)
	var source entitlements.Source
	if cfg.Stripe.SecretKey != "" {
		src := entitlements.NewStripeSource(s.Stripe)
		source = src
		s.reconciler = &entitlements.Reconciler{Store: s.Customers, Source: src, Log: log}
	} else {
		// Only with stripe.trusted_payloads: true (config refuses an empty key
		// otherwise). Logged at error so it is seen: this is not production.
		log.Error("TRUSTED PAYLOAD MODE (stripe.trusted_payloads: true): running without Stripe API access; "+
			"webhook state is taken from the signed events, nothing is re-read or reconciled, customers unknown "+
			"to the store are unsubscribed, and usage is counted but never reported. For tollgate demo and tests only",
			"mode", "trusted_payloads")
	}
	s.Gate = entitlements.New(entitlements.Options{
		Store: s.Customers, Source: source, Grants: customers, Plans: cfg.Plans, Gating: cfg.Gating,
		Metrics: s.Metrics, Logger: log, Now: o.Now,
	})
	if s.verifier, err = newVerifier(ctx, cfg.Auth.JWT, s.Customers, s.Metrics, log, o.Now); err != nil {
		s.Store.Close()
		return nil, err
	}
	if s.meter, err = newMeter(ctx, s); err != nil {
		s.close()
		return nil, err
	}
	limited := limitedMeters(cfg.Plans)
	if s.meter != nil && len(limited) > 0 {
		s.quotas = meter.NewQuotas(meter.QuotaOptions{
			Redis: s.Store.Client, Keys: s.Store.Keys, Used: s.meter.Used,
			LeaseTTL: cfg.Metering.Quota.LeaseTTL, SyncInterval: cfg.Metering.Quota.SyncInterval,
			MaxShares: cfg.Gating.CacheSize, Metrics: s.Metrics, Logger: log, Now: s.now,
		})
	}
	s.seats = newSeatGate(s)
	mounts, err := newWebhook(ctx, s)
	if err != nil {
		s.close()
		return nil, err
	}
	billingMounts, err := newBilling(s, source)
	if err != nil {
		s.close()
		return nil, err
	}
	mounts = append(mounts, billingMounts...)
	po := proxy.Options{
		Mounts:        mounts,
		Config:        cfg,
		Authenticator: s.verifier,
		Gate:          gateAdapter{g: s.Gate, limited: limited, seats: s.seats},
		Metrics:       s.Metrics,
		Logger:        log,
		Transport:     o.Transport,
	}
	if s.meter != nil {
		po.Counter = counterAdapter{s.meter}
	}
	if s.quotas != nil {
		po.Quota = quotaAdapter{q: s.quotas, now: s.now, soon: cfg.Metering.Quota.SyncInterval}
	}
	s.handler, err = proxy.New(po)
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// Listen binds both listeners, so that their addresses are known (tests use
// port 0) before Serve.
func (s *Sidecar) Listen() error {
	var err error
	if s.proxyLn, err = net.Listen("tcp", s.cfg.Listen); err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	if s.adminLn, err = net.Listen("tcp", s.cfg.AdminListen); err != nil {
		s.proxyLn.Close()
		return fmt.Errorf("admin_listen %s: %w", s.cfg.AdminListen, err)
	}
	return nil
}

// ProxyAddr is the proxy listener's address, after Listen.
func (s *Sidecar) ProxyAddr() string { return s.proxyLn.Addr().String() }

// AdminAddr is the admin listener's address, after Listen.
func (s *Sidecar) AdminAddr() string { return s.adminLn.Addr().String() }

// Serve runs until ctx is done, then shuts down gracefully: /readyz turns
// 503, the drain delay passes, in-flight requests finish within
// server.shutdown_timeout, and the store is closed. It returns nil after a
// clean shutdown.
func (s *Sidecar) Serve(ctx context.Context) error {
	if s.proxyLn == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	sc := s.cfg.Server
	base, cut := context.WithCancelCause(context.Background())
	s.cutRequests = cut
	defer cut(nil)
	s.proxySrv = &http.Server{
		Handler:           s.handler,
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: sc.ReadHeaderTimeout,
		ReadTimeout:       sc.ReadTimeout,
		WriteTimeout:      sc.WriteTimeout,
		IdleTimeout:       sc.IdleTimeout,
		MaxHeaderBytes:    sc.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.adminSrv = &http.Server{
		Handler:           s.adminHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	s.startWorkers(bg, &wg)
	for _, p := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{s.proxySrv, s.proxyLn}, {s.adminSrv, s.adminLn}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.srv.Serve(p.ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	s.log.Info("tollgate serving", "listen", s.ProxyAddr(), "admin_listen", s.AdminAddr(),
		"upstream", s.cfg.Upstream, "embedded_store", s.Store.Embedded())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		s.log.Error("listener failed", "err", serveErr)
	}
	s.shutdown(serveErr != nil, stopBG)
	wg.Wait()
	return serveErr
}

// startWorkers runs the background workers until ctx ends.
func (s *Sidecar) startWorkers(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.Gate.Run(ctx)
	}()
	if s.reconciler != nil && s.cfg.Gating.SyncInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.reconciler.RunEvery(ctx, s.cfg.Gating.SyncInterval)
		}()
	}
	s.startWebhookWorkers(ctx, wg)
	s.startReconcile(ctx, wg)
	s.startCensus(ctx, wg)
	if s.seats != nil {
		s.seats.run(ctx, wg)
	}
}

func (s *Sidecar) shutdown(now bool, stopWorkers context.CancelFunc) {
	s.draining.Store(true)
	if d := s.cfg.Server.DrainDelay; d > 0 && !now {
		s.log.Info("draining: /readyz answers 503", "drain_delay", d.String())
		t := time.NewTimer(d)
		<-t.C
	}
	start := time.Now()
	// A fresh, bounded context: Shutdown with an already-cancelled one would
	// return at once instead of letting in-flight requests finish.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Server.ShutdownTimeout)
	defer cancel()
	if err := s.proxySrv.Shutdown(ctx); err != nil {
		s.log.Warn("proxy shutdown cut short: in-flight requests were closed", "err", err)
		s.cutRequests(proxy.ErrShuttingDown)
		s.proxySrv.Close()
	}
	// Every request is done: return the quota shares at once (other
	// replicas may admit their units now, not after the lease expires),
	// then flush what the requests counted before the store closes, each
	// with a bound of its own, so that slow requests that used up
	// shutdown_timeout do not leave them no time at all. Returning shares
	// waits at most their lease: after it they come back anyway
	// (config.ShutdownBound adds these up for orchestrators).
	if s.quotas != nil {
		qctx, qcancel := context.WithTimeout(context.Background(), s.cfg.QuotaReturnBound())
		if err := s.quotas.Close(qctx); err != nil {
			s.log.Error("quota: returning shares at shutdown failed", "err", err)
		}
		qcancel()
	}
	if s.meter != nil {
		mctx, mcancel := context.WithTimeout(context.Background(), s.cfg.Server.ShutdownTimeout)
		if err := s.meter.Close(mctx); err != nil {
			s.log.Error("metering: flush at shutdown failed", "err", err)
		}
		mcancel()
	}
	if err := s.adminSrv.Shutdown(ctx); err != nil {
		s.adminSrv.Close()
	}
	stopWorkers()
	s.close()
	s.log.Info("tollgate stopped", "shutdown_ms", time.Since(start).Milliseconds())
}

func (s *Sidecar) close() {
	if s.quotas != nil {
		// A no-op after the graceful path's Close; on a failed start it
		// stops the sync loop.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.quotas.Close(ctx)
		cancel()
	}
	if s.meter != nil {
		// A no-op after the graceful path's Close; on a failed start it stops
		// the meter's workers and frees its lease.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.meter.Close(ctx); err != nil {
			s.log.Error("metering: close", "err", err)
		}
		cancel()
	}
	if s.verifier != nil {
		s.verifier.Close()
	}
	if err := s.Store.Close(); err != nil {
		s.log.Warn("store close", "err", err)
	}
}

func (s *Sidecar) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{
		Timeout:           10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		EnableOpenMetrics: false,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	return mux
}

// readyz answers 200 only when this replica can decide correctly: not
// draining, the store answers and the token keys are loaded.
func (s *Sidecar) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var problems []string
	if s.draining.Load() {
		problems = append(problems, "draining")
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := s.Store.Ping(ctx); err != nil {
		problems = append(problems, "store unreachable")
		s.log.Warn("readyz: store ping failed", "err", err)
	}
	if !s.verifier.Ready() {
		problems = append(problems, "token keys not loaded")
	}
	if !s.Gate.Live() {
		problems = append(problems, "entitlements change feed not live")
	}
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, p := range problems {
			fmt.Fprintln(w, p)
		}
		return
	}
	fmt.Fprintln(w, "ready")
}
