package billing

import "testing"

func TestSeatUser(t *testing.T) {
	const prefix = "/_tollgate/billing/seats/"
	for _, c := range []struct{ path, want string }{
		{prefix + "ann", "ann"},
		{prefix + "auth0|123", "auth0|123"},
		{prefix + "a@example.com", "a@example.com"},
		{prefix, ""},
		{prefix + "ann/extra", ""},
		{"/_tollgate/billing/seats", ""},
		{"/_tollgate/billing/seatsann", ""},
	} {
		if got := seatUser(c.path, prefix); got != c.want {
			t.Errorf("seatUser(%q) = %q; want %q", c.path, got, c.want)
		}
	}
}
