// Package store opens tollgate's shared state: a go-redis UniversalClient for
// a single Redis, Redis Cluster or Sentinel, or, when no Redis is configured,
// an embedded in-process Redis-protocol server so that one code path serves
// both. It also owns the key layout: every key sits under the configured
// prefix, and per-customer keys carry a {cus_...} hash tag so that one
// customer's keys land in one Cluster slot and multi-key work stays atomic.
package store

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/config"
)

// Store is an open connection to the shared state.
type Store struct {
	Client   redis.UniversalClient
	Keys     Keys
	embedded *miniredis.Miniredis
	switches *switchWatch // Sentinel only
}

// Open connects to the configured Redis, or starts the embedded store when
// none is configured. It does not wait for Redis to answer: readiness is
// reported by Ping, so that tollgate starts (and reports unready) while Redis
// is still coming up.
func Open(cfg config.Redis, log *slog.Logger) (*Store, error) {
	routeRedisLogs.Do(func() { redis.SetLogger(redisLogger{log}) })
	s := &Store{Keys: Keys{Prefix: cfg.Prefix}}
	if cfg.Embedded() {
		m := miniredis.NewMiniRedis()
		// TTLs run on the wall clock, as in Redis: leases, locks and
		// windows expire (miniredis otherwise waits for FastForward).
		m.ClockTTL(true)
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("store: start embedded store: %w", err)
		}
		log.Warn("no redis configured: using the embedded in-process store; state is NOT durable and NOT shared, run ONE replica only",
			"embedded_addr", m.Addr())
		s.embedded = m
		s.Client = redis.NewClient(&redis.Options{Addr: m.Addr()})
		return s, nil
	}
	opts := &redis.UniversalOptions{
		Addrs:         cfg.Addrs,
		MasterName:    cfg.MasterName,
		IsClusterMode: cfg.Cluster,
		Username:      cfg.Username,
		Password:      cfg.Password,
		// Sentinels answer to their own password; go-redis sends none
		// unless told (issue 11).
		SentinelPassword: cfg.SentinelPassword,
		DB:               cfg.DB,
		DialTimeout:      cfg.DialTimeout,
		ReadTimeout:      cfg.ReadTimeout,
		WriteTimeout:     cfg.WriteTimeout,
	}
	if cfg.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.URL != "" {
		u, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("store: redis.url: %w", err)
		}
		opts.Addrs = []string{u.Addr}
		// What the URL carries wins; what it leaves out comes from
		// redis.username / password / db (config refuses both at once), so
		// a password can stay in ${REDIS_PASSWORD} beside a plain URL.
		if u.Username != "" {
			opts.Username = u.Username
		}
		if u.Password != "" {
			opts.Password = u.Password
		}
		if u.DB != 0 {
			opts.DB = u.DB
		}
		if u.TLSConfig != nil {
			opts.TLSConfig = u.TLSConfig
		}
		if u.Network == "unix" {
			// UniversalOptions has no network field; a unix socket needs a
			// plain client.
			o := opts.Simple()
			o.Network = "unix"
			s.Client = redis.NewClient(o)
			promptRedial(s.Client, nil)
			return s, nil
		}
	}
	s.Client = redis.NewUniversalClient(opts)
	if _, ok := s.Client.(*redis.Client); ok && cfg.MasterName != "" {
		s.switches = newSwitchWatch() // a failover client: dials reach the current primary
	}
	promptRedial(s.Client, s.switches)
	return s, nil
}

// routeRedisLogs sends go-redis's own log lines (reconnect attempts) to
// the first store's structured logger instead of stderr.
var routeRedisLogs sync.Once

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

// Embedded reports whether the store is the in-process one.
func (s *Store) Embedded() bool { return s.embedded != nil }

// Ping reports whether the store answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.Client.Ping(ctx).Err()
}

// Close closes the client and stops the embedded server.
func (s *Store) Close() error {
	err := s.Client.Close()
	if s.embedded != nil {
		s.embedded.Close()
	}
	return err
}

// Keys builds every key tollgate writes.
type Keys struct{ Prefix string }

// Customer returns a per-customer key: prefix + "{customerID}:" + parts.
// The braces are the Cluster hash tag; ids cannot contain braces (Stripe ids
// are [A-Za-z0-9_]), and any that do are refused by callers before this.
func (k Keys) Customer(customerID string, parts ...string) string {
	var b strings.Builder
	b.WriteString(k.Prefix)
	b.WriteByte('{')
	b.WriteString(customerID)
	b.WriteByte('}')
	for _, p := range parts {
		b.WriteByte(':')
		b.WriteString(p)
	}
	return b.String()
}

// Global returns a key that belongs to no customer (leases, indexes).
func (k Keys) Global(parts ...string) string {
	return k.Prefix + strings.Join(parts, ":")
}
