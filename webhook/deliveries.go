package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/store"
)

// Sources of a delivery in the log.
const (
	SourceWebhook = "webhook" // Stripe posted it to the endpoint
	SourceReplay  = "replay"  // tollgate replay (or the background replay) took it from Stripe's events list
)

// Bounds of the delivery log, the defaults of webhook.delivery_log_size
// and webhook.delivery_log_age.
const (
	DefaultLogSize = 10000
	DefaultLogAge  = 7 * 24 * time.Hour
	// maxLogError caps the error kept per entry: a cause, never a body.
	maxLogError = 300
	// logWriteTimeout bounds the one write a delivery makes to the log, so
	// a slow Redis delays Stripe's answer by at most this much.
	logWriteTimeout = 500 * time.Millisecond
	// unverifiedPerSecond and unverifiedBurst bound how many deliveries
	// that failed verification one replica records: anyone can send them,
	// and a flood must not push the real deliveries out of the log.
	unverifiedPerSecond = 1
	unverifiedBurst     = 10
)

// Delivery is one entry of the delivery log: what one delivery of one
// event did.
type Delivery struct {
	// ID is the entry's id in the log (Redis stream id, ms-seq); set when
	// read.
	ID       string `json:"id,omitempty"`
	Event    string `json:"event,omitempty"` // "" when the delivery was not a verifiable event
	Type     string `json:"type"`            // "unverified" when it was not
	Customer string `json:"customer,omitempty"`
	// Result is the result label of tollgate_webhook_events_total:
	// processed, duplicate, ignored, stale, invalid, failed, busy.
	Result string `json:"result"`
	// Status is the HTTP status answered to Stripe; 0 for a replay.
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
	Source string `json:"source"` // webhook or replay
	// Replica names the process that handled it (its host name and pid).
	Replica    string    `json:"replica"`
	At         time.Time `json:"at"`
	DurationMS float64   `json:"duration_ms"`
}

// Failed reports whether the delivery did not take effect and needs a
// retry or an operator: anything but processed, duplicate, ignored, stale.
func (d Delivery) Failed() bool {
	switch d.Result {
	case resultProcessed, resultDuplicate, resultIgnored, resultStale:
		return false
	}
	return true
}

// DeliveryLog is the log of webhook deliveries in Redis: one stream, the
// single global key prefix + "webhook:log", each entry one JSON field "d".
// It keeps the newest Size entries and none older than MaxAge (both
// trimmed at every write). The key is written on its own, never inside a
// customer's transaction, so on Redis Cluster it lives in whatever slot it
// hashes to. A failed write is the caller's to log; it never fails a
// delivery.
type DeliveryLog struct {
	rdb     redis.UniversalClient
	key     string
	size    int64
	maxAge  time.Duration
	replica string
	now     func() time.Time

	mu         sync.Mutex
	tokens     float64 // for unverified deliveries
	lastRefill time.Time
}

// NewDeliveryLog returns the log on an open store connection; size <= 0
// and maxAge <= 0 select the defaults.
func NewDeliveryLog(rdb redis.UniversalClient, keys store.Keys, size int, maxAge time.Duration) *DeliveryLog {
	if size <= 0 {
		size = DefaultLogSize
	}
	if maxAge <= 0 {
		maxAge = DefaultLogAge
	}
	return &DeliveryLog{rdb: rdb, key: keys.Global("webhook", "log"), size: int64(size), maxAge: maxAge,
		replica: ReplicaName(), now: time.Now, tokens: unverifiedBurst}
}

// ReplicaName is how this process is named in the log: the host name (a
// pod's name on Kubernetes) and the pid.
func ReplicaName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return host + ":" + strconv.Itoa(os.Getpid())
}

// Record appends one delivery (Replica and At are filled in when empty)
// and trims the log to its bounds.
func (l *DeliveryLog) Record(ctx context.Context, d Delivery) error {
	if d.Replica == "" {
		d.Replica = l.replica
	}
	if d.At.IsZero() {
		d.At = l.now()
	}
	d.At = d.At.UTC()
	d.ID = ""
	d.Error = truncate(d.Error, maxLogError)
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	err = recordScript.Run(ctx, l.rdb, []string{l.key}, l.size, l.maxAge.Milliseconds(), b).Err()
	if err != nil {
		return fmt.Errorf("webhook: record delivery of %s: %w", d.Event, err)
	}
	return nil
}

// recordScript appends an entry and trims the log to its size and its age,
// the age counted back from the new entry's id (the Redis server's clock,
// so replicas' clocks cannot skew it): KEYS log; ARGV size, age (ms),
// entry.
var recordScript = redis.NewScript(`
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'd', ARGV[3])
local ms = tonumber(string.match(id, '^(%d+)'))
redis.call('XTRIM', KEYS[1], 'MINID', tostring(ms - tonumber(ARGV[2])))
return id`)

// allowUnverified takes a token from the replica's budget for recording
// deliveries that failed verification.
func (l *DeliveryLog) allowUnverified() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.lastRefill.IsZero() {
		l.tokens = min(unverifiedBurst, l.tokens+now.Sub(l.lastRefill).Seconds()*unverifiedPerSecond)
	}
	l.lastRefill = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// Filter selects entries of the log; the zero Filter selects every one.
type Filter struct {
	Customer string
	// Type is an exact event type, or a prefix ending in ".*"
	// ("customer.subscription.*"), as Stripe's events list takes it.
	Type   string
	Failed bool      // only deliveries that did not take effect
	Since  time.Time // only entries recorded at or after
	Event  string    // only this event id
	Source string    // only webhook or replay
	// Limit is the most entries returned, newest first; 0 means all.
	Limit int
}

// Match reports whether f selects d (tollgate events also applies it to
// the grant changes it lists beside the deliveries).
func (f Filter) Match(d Delivery) bool {
	switch {
	case f.Customer != "" && d.Customer != f.Customer:
		return false
	case f.Event != "" && d.Event != f.Event:
		return false
	case f.Source != "" && d.Source != f.Source:
		return false
	case f.Failed && !d.Failed():
		return false
	case f.Type != "":
		if prefix, ok := strings.CutSuffix(f.Type, "*"); ok {
			return strings.HasPrefix(d.Type, prefix)
		}
		return d.Type == f.Type
	}
	return true
}

// logPage is how many entries one read of the log returns.
const logPage = 500

// List returns the entries f selects, newest first. It reads the log in
// pages from the newest entry back to f.Since, so its cost is bounded by
// the log's size.
func (l *DeliveryLog) List(ctx context.Context, f Filter) ([]Delivery, error) {
	lo := "-"
	if !f.Since.IsZero() {
		lo = strconv.FormatInt(f.Since.UnixMilli(), 10)
	}
	var out []Delivery
	hi := "+"
	for {
		page, err := l.rdb.XRevRangeN(ctx, l.key, hi, lo, logPage).Result()
		if err != nil {
			return nil, fmt.Errorf("webhook: read the delivery log: %w", err)
		}
		for _, m := range page {
			d, ok := decodeDelivery(m)
			if !ok || !f.Match(d) {
				continue
			}
			out = append(out, d)
			if f.Limit > 0 && len(out) == f.Limit {
				return out, nil
			}
		}
		if len(page) < logPage {
			return out, nil
		}
		hi = "(" + page[len(page)-1].ID
	}
}

func decodeDelivery(m redis.XMessage) (Delivery, bool) {
	raw, _ := m.Values["d"].(string)
	var d Delivery
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		return Delivery{}, false
	}
	d.ID = m.ID
	return d, true
}

// Len is how many entries the log holds.
func (l *DeliveryLog) Len(ctx context.Context) (int64, error) {
	n, err := l.rdb.XLen(ctx, l.key).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
