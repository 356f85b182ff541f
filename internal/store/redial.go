package store

import (
	"context"
	"net"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Issue 11: go-redis's connection pool counts failed dials, and once
// PoolSize of them have failed it stops dialing altogether and probes the
// server in the background, once a second. A replica therefore kept failing
// every command for up to a second after Redis was back, and the change
// feed, readiness and webhooks with it (SPEC "Store faults": back within
// 1 s). promptRedial keeps the pool from ever counting a failed dial: a dial
// that fails hands the pool a connection that fails its first read or
// write with the dial's error, so the command fails at once, exactly as it
// would have, and the next command dials again. Concurrent dials stay
// bounded by the pool (MaxConcurrentDials), and a refused dial costs a few
// microseconds, so nothing storms while Redis is down; callers pace their
// own retries (the change feed pings every 100 ms).
//
// The hook also tells sw (when not nil) the server each dial reached.
func promptRedial(c redis.UniversalClient, sw *switchWatch) {
	h := redialHook{sw}
	switch c := c.(type) {
	case *redis.ClusterClient:
		// Hooks on a Cluster client wrap commands; dials belong to the
		// node clients, created as nodes are discovered.
		c.OnNewNode(func(n *redis.Client) { n.AddHook(h) })
	default:
		c.AddHook(h)
	}
}

type redialHook struct{ sw *switchWatch }

func (h redialHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			return failedConn{err: dialError{err}}, nil
		}
		if h.sw != nil {
			h.sw.reached(conn.RemoteAddr().String())
		}
		return conn, nil
	}
}

func (redialHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (redialHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// failedConn is a connection whose dial failed: every read and write
// returns the dial's error, and so does SyscallConn, which the pool's
// health check calls before it reuses an idle connection, so that one
// parked idle (a dial its caller stopped waiting for) is dropped rather
// than handed out after Redis is back.
type failedConn struct{ err error }

func (c failedConn) SyscallConn() (syscall.RawConn, error) { return nil, c.err }

func (c failedConn) Read([]byte) (int, error)         { return 0, c.err }
func (c failedConn) Write([]byte) (int, error)        { return 0, c.err }
func (c failedConn) Close() error                     { return nil }
func (c failedConn) LocalAddr() net.Addr              { return failedAddr{} }
func (c failedConn) RemoteAddr() net.Addr             { return failedAddr{} }
func (c failedConn) SetDeadline(time.Time) error      { return nil }
func (c failedConn) SetReadDeadline(time.Time) error  { return nil }
func (c failedConn) SetWriteDeadline(time.Time) error { return nil }

// dialError is a failed dial as the command sees it. It wraps nothing on
// purpose: go-redis retries a command whose error is (or wraps) a dial
// error, and the handshake's retries would hold a pool slot through their
// backoff, so that with many commands at once the pool jammed for seconds.
// A refused dial fails its command at once; callers retry on their own
// schedule.
type dialError struct{ err error }

func (e dialError) Error() string { return "store: " + e.err.Error() }

type failedAddr struct{}

func (failedAddr) Network() string { return "tcp" }
func (failedAddr) String() string  { return "(dial failed)" }
