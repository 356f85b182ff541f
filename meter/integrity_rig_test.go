package meter

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
)

// bed is what the integrity tests need of a rig: a single Redis (rig) or a
// Redis Cluster (clusterRig), whose flushes take different paths.
type bed interface {
	start(mutate func(*Options)) *Meter
	rdb() redis.UniversalClient
	stripe() *testrig.StripeDouble
}

func (r *rig) rdb() redis.UniversalClient           { return r.admin }
func (r *rig) stripe() *testrig.StripeDouble        { return r.double }
func (r *clusterRig) rdb() redis.UniversalClient    { return r.admin }
func (r *clusterRig) stripe() *testrig.StripeDouble { return r.double }

var bedPrefixes atomic.Int64

// freshKeys is a key prefix no other subtest uses, so that subtests can
// share one Redis or Cluster.
func freshKeys() store.Keys {
	return store.Keys{Prefix: fmt.Sprintf("it%d:", bedPrefixes.Add(1))}
}

// counted reads `tollgate usage`'s counted units per customer (one meter).
func counted(t *testing.T, rdb redis.UniversalClient, keys store.Keys) map[string]int64 {
	t.Helper()
	u, err := ReadUsage(context.Background(), rdb, keys)
	if err != nil {
		t.Fatalf("ReadUsage: %v", err)
	}
	out := make(map[string]int64)
	for _, row := range u.Rows {
		out[row.Customer] = row.Counted
	}
	return out
}

// badData is one way a customer's usage in Redis can be unusable for a
// flush: a total at the edge, a value that is not a valid count, a key of
// the wrong type.
type badData struct {
	name   string
	reason string // usage_report_errors_total reason
	seed   func(ctx context.Context, rdb redis.UniversalClient, st *redisStore, cus string, ws int64) error
}

var badKinds = []badData{
	{"window total at MaxTotal", "overflow", func(ctx context.Context, rdb redis.UniversalClient, st *redisStore, cus string, ws int64) error {
		if err := rdb.HSet(ctx, st.windowKey(cus, "calls", ws), "counted", int64(MaxTotal)).Err(); err != nil {
			return err
		}
		return rdb.HSet(ctx, st.totalsKey(cus), "calls:counted", int64(MaxTotal)).Err()
	}},
	{"totals one short of passing MaxTotal", "overflow", func(ctx context.Context, rdb redis.UniversalClient, st *redisStore, cus string, ws int64) error {
		return rdb.HSet(ctx, st.totalsKey(cus), "calls:counted", int64(MaxTotal-4)).Err()
	}},
	{"window total past 2^53", "corrupt", func(ctx context.Context, rdb redis.UniversalClient, st *redisStore, cus string, ws int64) error {
		return rdb.HSet(ctx, st.windowKey(cus, "calls", ws), "counted", "9007199254740993").Err()
	}},
	{"window total at MaxInt64", "corrupt", func(ctx context.Context, rdb redis.UniversalClient, st *redisStore, cus string, ws int64) error {
		return rdb.HSet(ctx, st.windowKey(cus, "calls", ws), "counted", "9223372036854775807").Err()
	}},
	{"negative window total", "corrupt", func(ctx context.Context, rdb redis.UniversalClient, st *redisStore, cus string, ws int64) error {
		return rdb.HSet(ctx, st.windowKey(cus, "calls", ws), "counted", "-1").Err()
	}},
	{"totals field not an integer", "corrupt", func(ctx context.Context, rdb redis.UniversalClient, st *redisStore, cus string, ws int64) error {
		return rdb.HSet(ctx, st.totalsKey(cus), "calls:counted", "12abc").Err()
	}},
	{"rollup bucket not an integer", "corrupt", func(ctx context.Context, rdb redis.UniversalClient, st *redisStore, cus string, ws int64) error {
		b := st.win.bucketOf(ws)
		return rdb.HSet(ctx, st.rollupKey(cus, "calls", dayOf(b)), itoa(b), "1.5").Err()
	}},
	{"rollup of the wrong type", "corrupt", func(ctx context.Context, rdb redis.UniversalClient, st *redisStore, cus string, ws int64) error {
		return rdb.Set(ctx, st.rollupKey(cus, "calls", dayOf(st.win.bucketOf(ws))), "x", 0).Err()
	}},
	{"window of the wrong type", "corrupt", func(ctx context.Context, rdb redis.UniversalClient, st *redisStore, cus string, ws int64) error {
		return rdb.RPush(ctx, st.windowKey(cus, "calls", ws), "x").Err()
	}},
	{"open index of the wrong type", "corrupt", func(ctx context.Context, rdb redis.UniversalClient, st *redisStore, cus string, ws int64) error {
		return rdb.Set(ctx, st.openKey(cus), "x", 0).Err()
	}},
}

// customerKeys are the keys a flush writes for one customer and window.
func customerKeys(st *redisStore, cus string, ws int64) []string {
	return []string{st.windowKey(cus, "calls", ws), st.openKey(cus), st.totalsKey(cus),
		st.rollupKey(cus, "calls", dayOf(st.win.bucketOf(ws))), st.keys.Customer(cus, "usage", "flushed")}
}

// snapshot is each key's serialized value, to show that nothing was written.
func snapshot(t *testing.T, rdb redis.UniversalClient, keys []string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for _, k := range keys {
		v, err := rdb.Dump(context.Background(), k).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("DUMP %s: %v", k, err)
		}
		out[k] = v
	}
	return out
}

// errAnswerLost is a Redis answer lost after the command ran: the outcome
// the caller cannot know.
var errAnswerLost = errors.New("i/o timeout (test: the answer was lost after redis ran the script)")

// lostAnswers lets the flush script run in Redis and then loses the
// answers of the calls numbered in drop (1 is the first flush script).
type lostAnswers struct {
	mu      sync.Mutex
	calls   int
	drop    map[int]bool
	dropped int
}

func (h *lostAnswers) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *lostAnswers) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *lostAnswers) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil || !isFlushScript(cmd) {
			return err
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.calls++
		if h.drop[h.calls] {
			h.dropped++
			cmd.SetErr(errAnswerLost)
			return errAnswerLost
		}
		return nil
	}
}

func isFlushScript(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) < 2 {
		return false
	}
	switch cmd.Name() {
	case "evalsha":
		return args[1] == flushScript.Hash()
	case "eval":
		src, _ := args[1].(string)
		sum := sha1.Sum([]byte(src))
		return hex.EncodeToString(sum[:]) == flushScript.Hash()
	}
	return false
}

// jsonLogger logs JSON to buf, for tests that check what was logged.
func jsonLogger(buf *testrig.LogBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
