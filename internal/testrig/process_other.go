//go:build !linux

package testrig

import "syscall"

// childProcAttr is empty where Pdeathsig does not exist: children are still
// killed by tb.Cleanup, just not when the test binary itself is killed.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}
