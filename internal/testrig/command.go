package testrig

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Command is a child process owned by one test (an example app, the
// tollgate binary), its output kept for the failure message.
type Command struct {
	proc *process
	out  *LogBuffer
}

// commandStopTimeout bounds a graceful stop at cleanup before SIGKILL.
const commandStopTimeout = 10 * time.Second

// StartCommand starts cmd (its Stdout and Stderr are replaced), stops it
// with SIGTERM at cleanup (SIGKILL after 10 s) and, if the test failed,
// logs the tail of its output. The kernel kills it if the test binary dies
// without cleaning up.
func StartCommand(tb testing.TB, name string, cmd *exec.Cmd) *Command {
	tb.Helper()
	c := &Command{out: &LogBuffer{}}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	cmd.SysProcAttr = childProcAttr()
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		tb.Fatalf("testrig: start %s: %v", name, err)
	}
	c.proc = &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.proc.err = cmd.Wait()
		close(c.proc.done)
	}()
	tb.Cleanup(func() {
		c.proc.signalAndWait(syscall.SIGTERM, commandStopTimeout)
		if tb.Failed() {
			tb.Logf("%s output (last 6000 bytes):\n%s", name, tail(c.out.String(), 6000))
		}
	})
	return c
}

// Kill ends the process at once (SIGKILL), for a process whose graceful
// stop the test does not need to wait for.
func (c *Command) Kill() { c.proc.kill() }

// Output is everything the process wrote so far.
func (c *Command) Output() string { return c.out.String() }

// Exited reports whether the process has ended, and its exit error.
func (c *Command) Exited() (bool, error) {
	if !c.proc.exited() {
		return false, nil
	}
	return true, c.proc.err
}

// Wait waits up to timeout for the process to end on its own and returns
// its exit error (an error as well when it is still running).
func (c *Command) Wait(timeout time.Duration) error {
	select {
	case <-c.proc.done:
		return c.proc.err
	case <-time.After(timeout):
		return errors.New("testrig: process still running")
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	p, err := freePort()
	if err != nil {
		tb.Fatalf("testrig: free port: %v", err)
	}
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
