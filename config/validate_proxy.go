package config

import (
	"fmt"
	"regexp"
	"strings"
)

// upgradeRe is an RFC 9110 §7.8 protocol: a token, optionally "/" and a
// version token.
var upgradeRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+(/[!#$%&'*+.^_`|~0-9A-Za-z-]+)?$")

// tunnelUpgrades carry HTTP/2: every request inside the tunnel would reach
// the app without passing routes, auth or the gate.
var tunnelUpgrades = []string{"h2c", "h2"}

func (c *Config) validateProxy(p *problems) {
	seen := map[string]bool{}
	for i, u := range c.Proxy.Upgrades {
		path := fmt.Sprintf("proxy.upgrades[%d]", i)
		name, _, _ := strings.Cut(strings.ToLower(u), "/")
		switch {
		case !upgradeRe.MatchString(u):
			p.add(path, "%q is not an Upgrade protocol token such as websocket", u)
		case containsFold(tunnelUpgrades, name):
			p.add(path, "%q cannot be allowed: HTTP/2 inside an upgraded connection carries requests tollgate never sees, so they would skip routes, auth and gating", u)
		case seen[strings.ToLower(u)]:
			p.add(path, "%q is listed twice", u)
		}
		seen[strings.ToLower(u)] = true
	}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
