package testrig

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// process is a child process whose exit is observed by one goroutine, which
// ends when the process does.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // cmd.Wait's result; read only after done is closed
}

// startProcess starts bin with args, sending its output to out (nil discards
// it).
func startProcess(bin string, args []string, out io.Writer) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = childProcAttr()
	// A child that leaks the output pipe to a grandchild must not hang Wait.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signalAndWait sends sig and waits up to timeout for the process to exit;
// past that it is killed. It reports whether the process exited on its own.
func (p *process) signalAndWait(sig os.Signal, timeout time.Duration) bool {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		// The process is gone or cannot be signalled: make sure, then wait.
		_ = p.cmd.Process.Kill()
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return true
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return false
	}
}

// kill sends SIGKILL and waits for the process to exit.
func (p *process) kill() {
	p.signalAndWait(syscall.SIGKILL, time.Minute)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. A
// caller that binds it later must cope with losing the race (see isAddrInUse).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// loopbackAddr is "127.0.0.1:port".
func loopbackAddr(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}
