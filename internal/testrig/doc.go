// Package testrig is tollgate's test infrastructure: real dependencies started
// per test and a recording Stripe double, each cleaned up by tb.Cleanup.
//
// It is imported only from _test.go files (and from examples/internal/stack,
// the harness of the example tests). What it offers:
//
//   - StartRedis starts a real redis-server (AOF on by default, so Restart
//     keeps data as a durable deployment would) that a test can Stop, Kill and
//     Restart on the same port. Without redis-server on PATH it falls back to
//     an in-process miniredis, unless TOLLGATE_TEST_REQUIRE_REDIS=1.
//   - StartRedisCluster starts a real n-node Redis Cluster (slots assigned,
//     every node ok) for the Cluster paths of the store, the meter and the
//     webhook ledger; skipped like StartRedis without redis-server 7.0+.
//   - StartStripeMock starts stripe-mock, Stripe's request validator. Without
//     the binary the test is skipped, unless TOLLGATE_TEST_REQUIRE_STRIPE_MOCK=1.
//   - StartPrometheus starts Debian's prometheus scraping given targets
//     every second, and queries it through its HTTP API. Without the binary
//     the test is skipped, unless TOLLGATE_TEST_REQUIRE_PROMETHEUS=1.
//   - StripeClient builds a stripe-go client pointed at either of the above.
//   - NewStripeDouble starts a stateful Stripe double that records every
//     request, honours Idempotency-Key, deduplicates meter events by
//     identifier and injects faults (errors, latency, timeouts after the
//     effect was applied).
//
// Conditions are awaited by polling with a deadline (WaitFor), never by
// sleeping.
package testrig
