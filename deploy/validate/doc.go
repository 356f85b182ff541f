// Package validate holds the tests of the files under deploy/: every
// Kubernetes document decoded strictly into the API type it claims, the
// compose file loaded by the Compose Specification's own loader, and the
// Grafana dashboard and Prometheus rules checked for what tollgate's docs
// promise. It is a module of its own so that the Kubernetes and Compose
// libraries stay out of the tollgate binary's go.mod.
package validate
