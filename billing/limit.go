package billing

import (
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tollgate-dev/tollgate/proxy"
)

// userLimits bounds how fast one user's billing calls reach Stripe: a
// stuck button or a script must not use up the account's Stripe rate
// limit, which usage reporting shares. Each replica keeps its own.
type userLimits struct {
	every rate.Limit
	burst int
	max   int // users tracked; when full, everyone starts afresh
	mu    sync.Mutex
	users map[string]*rate.Limiter
}

// newUserLimits allows perMinute calls per user and minute, in bursts of
// as many; 0 turns the limit off (nil).
func newUserLimits(perMinute int) *userLimits {
	if perMinute <= 0 {
		return nil
	}
	return &userLimits{every: rate.Limit(float64(perMinute) / 60), burst: perMinute, max: 100_000,
		users: make(map[string]*rate.Limiter)}
}

// allow takes one call for user at now, or says how long to wait.
func (l *userLimits) allow(user string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.users[user]
	if !ok {
		if len(l.users) >= l.max {
			clear(l.users)
		}
		lim = rate.NewLimiter(l.every, l.burst)
		l.users[user] = lim
	}
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

func rateLimited(wait time.Duration) *proxy.HTTPError {
	return &proxy.HTTPError{Status: http.StatusTooManyRequests, Code: "rate_limited",
		Msg:        "Too many billing requests from this account; try again shortly.",
		RetryAfter: int(math.Ceil(wait.Seconds()))}
}
