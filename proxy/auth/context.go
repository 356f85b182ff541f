package auth

import "context"

type identityKey struct{}

// NewContext returns ctx carrying the verified caller, for handlers that
// tollgate serves itself behind authentication (the billing API).
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the verified caller put there by NewContext.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok && id.User != ""
}
