// Package meta holds tests about the codebase itself: every package has a
// doc comment, and dependency rules between packages hold (Tailscale's
// pkgdoc and depaware checks, in small).
package meta
