package proxy

import (
	"context"
	"sync"

	"github.com/tollgate-dev/tollgate/internal/logging"
)

// exchangeContext is a request's context from step 1 on. It answers for
// the exchange (the ReverseProxy callbacks find it) and for the request id
// (every log line of the request carries it) in one node, kept inside the
// exchange: two context.WithValue layers and the requests they were
// attached to cost four allocations per request (issue 13). Everything
// else (deadline, cancellation, cause, other values) is the parent's.
type exchangeContext struct {
	context.Context
	x *exchange
}

func (c *exchangeContext) Value(key any) any {
	switch key.(type) {
	case exchangeKey, logging.RequestIDKey:
		return c.x
	}
	return c.Context.Value(key)
}

// RequestID makes the exchange the logging.IDCarrier of its context.
func (x *exchange) RequestID() string { return x.rid }

var _ logging.IDCarrier = (*exchange)(nil)

// copyBufferSize is the size of the buffers ReverseProxy copies bodies
// through (its own default).
const copyBufferSize = 32 << 10

// bufferPool lends ReverseProxy its copy buffers. Without one it
// allocates 32 KiB per request, which was most of the bytes the proxy
// allocated and so most of its garbage collection (issue 13). The pool
// holds array pointers, so that Put does not allocate either.
type bufferPool struct{ p sync.Pool }

var copyBuffers = &bufferPool{}

func (b *bufferPool) Get() []byte {
	if a, ok := b.p.Get().(*[copyBufferSize]byte); ok {
		return a[:]
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if len(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf))
	}
}
