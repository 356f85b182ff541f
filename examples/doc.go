// Package examples holds the example apps behind tollgate (express/,
// nextjs/, django/; docs/frameworks.md) and the tests that run them behind
// the real tollgate binary. It has no Go code of its own.
package examples
