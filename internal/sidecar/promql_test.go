package sidecar

import (
	"slices"
	"strings"
	"testing"
)

// promqlKeywords are identifiers in PromQL that are not metric names when
// they are not followed by "(": aggregation operators (sum by (x) (...)),
// binary operators and modifiers.
var promqlKeywords = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "nan": true,
}

// labelListKeywords are followed by a parenthesised label list, whose
// names are not metrics.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// metricNames returns the metric names a PromQL expression selects: the
// identifiers outside label matchers, ranges and strings that are neither
// a function call, an operator nor a label list. It is a tokenizer, not a
// parser, which is enough for the dashboard's and the alerts' expressions
// (and keeps the Prometheus server module out of go.mod).
func metricNames(expr string) []string {
	var out []string
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(expr, i)
		case c == '{':
			i = skipTo(expr, i, '}')
		case c == '[':
			i = skipTo(expr, i, ']')
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\t' || expr[k] == '\n') {
				k++
			}
			switch {
			case labelListKeywords[word] && k < len(expr) && expr[k] == '(':
				j = skipTo(expr, k, ')')
			case k < len(expr) && expr[k] == '(', promqlKeywords[word]:
				// a function call or an operator
			default:
				out = append(out, word)
			}
			i = j
		case c >= '0' && c <= '9', c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++ // 0.99, 1e3, 0x1f
			}
		default:
			i++
		}
	}
	return out
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdent(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// skipString returns the index after the string literal starting at i.
func skipString(s string, i int) int {
	q := s[i]
	for i++; i < len(s); i++ {
		switch {
		case s[i] == '\\' && q != '`':
			i++
		case s[i] == q:
			return i + 1
		}
	}
	return i
}

// skipTo returns the index after the close byte matching the opener at i,
// skipping strings inside.
func skipTo(s string, i int, close byte) int {
	open, depth := s[i], 0
	for i < len(s) {
		switch c := s[i]; {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(s, i)
			continue
		case c == open:
			depth++
		case c == close:
			depth--
			if depth == 0 {
				return i + 1
			}
		}
		i++
	}
	return i
}

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`up{job=~"tollgate|.+/tollgate"} == 0`, []string{"up"}},
		{`sum by (job, meter) (tollgate_usage_pending_units) > 0 and sum by (job, meter) (increase(tollgate_usage_reported_units_total[15m])) == 0`,
			[]string{"tollgate_usage_pending_units", "tollgate_usage_reported_units_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(tollgate_request_duration_seconds_bucket{job=~"$job"}[$__rate_interval])))`,
			[]string{"tollgate_request_duration_seconds_bucket"}},
		{`time() - tollgate_jwks_last_success_timestamp_seconds > 7200`, []string{"tollgate_jwks_last_success_timestamp_seconds"}},
		{`sum without (instance) (a{x="}{"}) / on(job) group_left(route) b_total`, []string{"a", "b_total"}},
		{`topk(5, sum(rate(x:y_total[1m] offset 5m)))`, []string{"x:y_total"}},
		{"sum by (meter, reason) (increase(m{reason=~\"a|b\"}[30m])) > 0\n# a comment with words\n or vector(0)", []string{"m"}},
	} {
		if got := metricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%q) = %v; want %v", c.expr, got, c.want)
		}
	}
}

// familyOf maps a histogram's or summary's sample name to its family.
func familyOf(name string, exported map[string]bool) string {
	for _, suf := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suf); ok && exported[base] {
			return base
		}
	}
	return name
}
