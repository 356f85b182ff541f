package sidecar

import (
	"context"
	"log/slog"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/proxy/auth"
)

// newVerifier maps the auth.jwt section onto the verifier's options.
func newVerifier(ctx context.Context, j config.JWT, links auth.UserLinks, m *metrics.Metrics, log *slog.Logger, now func() time.Time) (*auth.Verifier, error) {
	o := auth.Options{
		Algorithms:          j.Algorithms,
		Issuer:              j.Issuer,
		Audience:            j.Audience,
		PublicKeyFiles:      j.PublicKeyFiles,
		JWKSURL:             j.JWKSURL,
		JWKSRefresh:         j.JWKSRefresh,
		JWKSRefetchCooldown: j.JWKSRefetchCooldown,
		Leeway:              j.Leeway,
		CustomerClaim:       j.CustomerClaim,
		UserClaim:           j.UserClaim,
		Cookie:              j.Cookie,
		MaxTokenBytes:       j.MaxTokenBytes,
		CacheSize:           j.CacheSize,
		Now:                 now,
		Links:               links,
		Validations:         m.JWTValidations,
		JWKSFetches:         m.JWKSFetches,
		Logger:              log,
	}
	if j.JWKSURL != "" {
		o.JWKSLastSuccess = m.JWKSLastSuccess.WithLabelValues()
	}
	if j.HMACSecret != "" {
		o.HMACSecret = []byte(j.HMACSecret)
	}
	return auth.New(ctx, o)
}
