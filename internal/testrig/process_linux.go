package testrig

import "syscall"

// childProcAttr asks the kernel to kill a child if the test binary dies
// without running its cleanups (a -timeout panic, a SIGKILL), so no
// redis-server or stripe-mock outlives it.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
