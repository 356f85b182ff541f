package meter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/config"
)

// Errors of stored usage that the meter refuses to add to.
var (
	// ErrCorrupt is a stored usage value that is not a count the meter
	// writes: not a decimal integer in [0, MaxTotal], or a key of the wrong
	// type.
	ErrCorrupt = errors.New("meter: stored usage is not a valid count")
	// ErrOverflow is an add that would take a total past MaxTotal.
	ErrOverflow = errors.New("meter: usage total would pass meter.MaxTotal")
)

// msgRefused is the log message of units the meter refused: logged at
// error with customer, meter, window, units and reason.
const msgRefused = "metering: units refused, not billed"

// Bounds on counts (issue 9: an upstream's X-Tollgate-Usage near 2^63 was
// added with plain +=, wrapped a bill to zero and, in Redis, made a flush
// drop other customers' counts).
const (
	// MaxTotal bounds every total the meter keeps: a (customer, meter,
	// window) in memory and in the local buffer, and every Redis field
	// (a window's counted, reported and parked, the customer's totals, the
	// rollups). It is 2^53−1 because Redis Lua numbers are doubles: every
	// integer up to it is exact, so the scripts' checks and subtractions are
	// exact too. An add that would pass it is refused, never wrapped.
	MaxTotal = 1<<53 - 1
	// MaxUnits bounds one Count and one quota claim: 2^40, the largest
	// metering.max_units_per_request (config.MaxUnitsBound), so whatever the
	// proxy accepts from an answer the meter counts. The proxy's own bound
	// is usually smaller; this one is the meter's defence against a caller
	// that applies none. A larger or negative value is refused.
	MaxUnits = config.MaxUnitsBound
)

// Reasons (usage_report_errors_total{reason}) for units the meter refuses.
const (
	reasonInvalidUnits = "invalid_units" // one Count outside [0, MaxUnits]
	reasonOverflow     = "overflow"      // a total would pass MaxTotal
	reasonCorrupt      = "corrupt"       // a stored value is not a valid count
)

// addUnits is a+b for a, b in [0, MaxTotal], and false instead of a sum
// past MaxTotal (or an operand outside the range).
func addUnits(a, b int64) (int64, bool) {
	if a < 0 || b < 0 || a > MaxTotal-b {
		return a, false
	}
	return a + b, true
}

// satAdd is a+b capped at MaxTotal, for reads (Used, gauges, totals shown):
// a capped read means "at least MaxTotal", so a quota stays closed. Negative
// operands count as 0.
func satAdd(a, b int64) int64 {
	a, b = max(a, 0), max(b, 0)
	if a > MaxTotal-b {
		return MaxTotal
	}
	return a + b
}

// parseTotal reads a stored count: the decimal form the meter writes (no
// sign, no leading zero) of an integer in [0, MaxTotal].
func parseTotal(s string) (int64, error) {
	if s == "" || len(s) > 16 || (s[0] == '0' && len(s) > 1) {
		return 0, fmt.Errorf("%w: %q", ErrCorrupt, s)
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q", ErrCorrupt, s)
		}
		n = n*10 + int64(c-'0') // at most 16 digits: no int64 overflow
	}
	if n > MaxTotal {
		return 0, fmt.Errorf("%w: %q", ErrCorrupt, s)
	}
	return n, nil
}

// countScript is the Lua shared by the scripts that read stored counts:
// MAX is MaxTotal (MAXS as text), and count(v) is parseTotal for an HGET answer (false,
// absent, is 0; nil means the value is not a valid count).
var countScript = `
local MAX, MAXS = ` + strconv.FormatInt(MaxTotal, 10) + `, '` + strconv.FormatInt(MaxTotal, 10) + `'
local function count(v)
  if v == false then return 0 end
  if type(v) ~= 'string' or #v > 16 or not (v == '0' or string.find(v, '^[1-9]%d*$')) then return nil end
  local n = tonumber(v)
  if n > MAX then return nil end
  return n
end
`

// scriptError maps a script's refusal (an error reply starting with
// TGCORRUPT or TGOVERFLOW) to ErrCorrupt or ErrOverflow.
func scriptError(err error) error {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "TGCORRUPT "); ok {
		return fmt.Errorf("%w: %s", ErrCorrupt, rest)
	}
	if rest, ok := strings.CutPrefix(msg, "TGOVERFLOW "); ok {
		return fmt.Errorf("%w: %s", ErrOverflow, rest)
	}
	return err
}

// refused logs and counts units the meter does not bill: never a silent
// wrap or drop.
func (m *Meter) refused(k ckey, units int64, reason string) {
	m.metrics.UsageReportErrors.WithLabelValues(k.meter, reason).Inc()
	m.log.Error(msgRefused, "customer", k.customer, "meter", k.meter, "window", time.UnixMilli(k.window).UTC(),
		"units", units, "reason", reason, "max_units", int64(MaxUnits), "max_total", int64(MaxTotal))
}
