package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// errSwitchRefused marks a 101 answer switching to a protocol the client
// was not allowed to ask for; the client gets 502 upgrade_refused.
var errSwitchRefused = errors.New("proxy: upstream switched to a protocol that was not allowed")

// upgrades is the proxy.upgrades allowlist, lowercased.
type upgrades []string

func newUpgrades(list []string) upgrades {
	u := make(upgrades, len(list))
	for i, p := range list {
		u[i] = strings.ToLower(p)
	}
	return u
}

// allows reports whether a requested Upgrade token may be forwarded: it
// equals an allowed entry, or its protocol name (before "/version") equals
// an entry that has no version. Case is ignored (RFC 9110 §7.8).
func (u upgrades) allows(token string) bool {
	token = strings.ToLower(token)
	name, _, _ := strings.Cut(token, "/")
	for _, a := range u {
		if a == token || (a == name && !strings.Contains(a, "/")) {
			return true
		}
	}
	return false
}

// upgradeFields are the fields of a client's request that filter acts
// on, as stripInbound saw them.
type upgradeFields uint8

const (
	sawUpgrade upgradeFields = 1 << iota
	sawHTTP2Settings
)

// filter removes every Upgrade token the allowlist does not name from an
// outbound request, and returns the tokens kept. httputil.ReverseProxy has
// already dropped the client's hop-by-hop headers and then restored
// "Connection: Upgrade" and the client's first Upgrade value, so without
// this an "Upgrade: h2c" would reach the app: behind a backend that accepts
// it loosely, every request inside the tunnel skips routes, auth and gating
// (h2c smuggling). HTTP2-Settings only means something with h2c, which is
// never allowed, so it is always removed. saw says which of the two the
// client sent (stripInbound): a request with neither, nearly all, is not
// looked up for them again.
func (u upgrades) filter(h http.Header, saw upgradeFields) []string {
	// (delete and direct reads of canonical names are Header.Del and Get
	// without canonicalising them again.)
	if saw&sawHTTP2Settings != 0 {
		delete(h, "Http2-Settings")
	}
	if saw&sawUpgrade == 0 {
		return nil // the clone has none either: ReverseProxy sets one only from the client's
	}
	up, ok := h["Upgrade"]
	if !ok {
		// ReverseProxy has removed Connection with the other hop-by-hop
		// headers and puts it back only beside an Upgrade: nothing to drop.
		return nil
	}
	var kept []string
	for _, t := range headerTokens(up) {
		if u.allows(t) {
			kept = append(kept, t)
		}
	}
	if len(kept) == 0 {
		delete(h, "Upgrade")
		dropToken(h, "Connection", "upgrade")
		return nil
	}
	h["Upgrade"] = []string{strings.Join(kept, ", ")}
	return kept
}

// checkSwitch refuses a 101 answer unless every protocol it switches to is
// one the client asked for and was allowed (kept): an upstream that
// switches on its own, or to something else, would open a channel tollgate
// never judged.
func checkSwitch(resp *http.Response, kept []string) error {
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil
	}
	got := headerTokens(resp.Header["Upgrade"])
	if len(got) == 0 {
		return fmt.Errorf("%w: 101 without an Upgrade header (requested %q)", errSwitchRefused, kept)
	}
	for _, t := range got {
		if !containsFold(kept, t) {
			return fmt.Errorf("%w: switched to %q (requested and allowed: %q)", errSwitchRefused, t, kept)
		}
	}
	return nil
}

// headerTokens splits comma-separated header values into trimmed,
// non-empty tokens.
func headerTokens(values []string) []string {
	var out []string
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

// dropToken removes one token (any case) from a comma-separated header,
// and the header itself when nothing remains.
func dropToken(h http.Header, name, token string) {
	var kept []string
	for _, t := range headerTokens(h[name]) {
		if !strings.EqualFold(t, token) {
			kept = append(kept, t)
		}
	}
	if len(kept) == 0 {
		delete(h, name) // name is canonical
		return
	}
	h[name] = []string{strings.Join(kept, ", ")}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
