package meter

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/tollgate-dev/tollgate/internal/metrics"
)

// maxIdentifier is Stripe's limit for a meter event identifier.
const maxIdentifier = 100

// windows assigns times to aggregation windows (aligned to the Unix epoch)
// and windows to rollup buckets, all in Unix milliseconds.
type windows struct {
	size   int64 // window length
	bucket int64 // rollup bucket: a whole number of windows, about an hour
}

func newWindows(size time.Duration) windows {
	w := windows{size: size.Milliseconds()}
	n := time.Hour.Milliseconds() / w.size
	w.bucket = w.size * max(1, n)
	return w
}

// start is the start of the window that holds t.
func (w windows) start(t time.Time) int64 {
	ms := t.UnixMilli()
	return ms - mod(ms, w.size)
}

// bucketOf is the start of the rollup bucket that holds window ws.
func (w windows) bucketOf(ws int64) int64 { return ws - mod(ws, w.bucket) }

// dayOf is the start of the UTC day that holds bucket b (rollup hashes are
// per day).
func dayOf(b int64) int64 {
	const day = 24 * 60 * 60 * 1000
	return b - mod(b, day)
}

func mod(a, b int64) int64 {
	r := a % b
	if r < 0 {
		r += b
	}
	return r
}

// eventTimestamp is the Unix second reported for window ws: the first whole
// second inside it (a window is at least 1 s long), the same on every retry.
func eventTimestamp(ws int64) int64 { return (ws + 999) / 1000 }

// Identifier is the meter event identifier of one report: deterministic in
// (customer, meter, window start, window generation, report sequence), so a
// retry after any failure sends the same one and Stripe deduplicates it.
// The generation is fixed when the window's Redis aggregate is created; a
// window re-created after its retention gets a new one, so a late count can
// never collide with an identifier Stripe already holds. At most 100 chars:
// longer forms are replaced by a hash of themselves.
func Identifier(customer, meter string, windowStart int64, gen string, seq int64) string {
	id := "tg-" + customer + "-" + meter + "-" + strconv.FormatInt(windowStart, 10) + "-" + gen + "-" + strconv.FormatInt(seq, 10)
	if len(id) <= maxIdentifier {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "tg-h-" + hex.EncodeToString(sum[:24])
}

// defaultReplicaID is hostname:pid:random, unique per process.
// defaults fills what every worker of this package falls back to: the wall
// clock, the default logger, a private metrics registry and a replica id.
func defaults(now *func() time.Time, log **slog.Logger, m **metrics.Metrics, replica *string) {
	if *now == nil {
		*now = time.Now
	}
	if *log == nil {
		*log = slog.Default()
	}
	if *m == nil {
		*m = metrics.New()
	}
	if *replica == "" {
		*replica = defaultReplicaID()
	}
}

func defaultReplicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), randomHex(4))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
