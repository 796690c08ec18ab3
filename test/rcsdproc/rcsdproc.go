// Package rcsdproc builds the rcsd binary and runs it as a real process on
// loopback for end-to-end tests: free ports, a private data directory,
// readiness from /readyz, and a clean SIGTERM at the end of the test.
package rcsdproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds rcsd once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rcsd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "rcsd")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/rcsd")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// FreePort returns a port free for both UDP and TCP on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// FreePorts returns n distinct ports free for both UDP and TCP on
// 127.0.0.1: each is held until all are found, so that the kernel does
// not hand the same one out twice. Another process may still take one
// before it is used (Start retries when that happens).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; len(ports) < n && i < 50*n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		held = append(held, u)
		ports = append(ports, port)
	}
	if len(ports) < n {
		t.Fatal("no free port")
	}
	return ports
}

// Proc is a running rcsd.
type Proc struct {
	Port, TLSPort, HTTPPort int
	Dir                     string
	Args                    []string // common flags (storage, http.listen …) for subscriber commands
	cmd                     *exec.Cmd
	exited                  chan struct{} // closed once the process is gone
	waitErr                 error         // its exit status, after exited
	logs                    *syncBuffer
	t                       testing.TB
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start runs `rcsd serve` with UDP+TCP on one port, TLS on another, the
// given extra flags, and waits until /readyz says ready.
func Start(t testing.TB, extra ...string) *Proc {
	t.Helper()
	return StartIn(t, t.TempDir(), extra...)
}

// StartIn is Start with the data directory given (to restart on the same
// state). A start that fails because a chosen port was taken meanwhile (by
// another test package running at the same time) is tried again on other
// ports.
func StartIn(t testing.TB, dir string, extra ...string) *Proc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p, err := startIn(t, dir, extra)
		if err == nil {
			t.Cleanup(func() {
				p.Stop()
				if t.Failed() {
					t.Logf("rcsd logs:\n%s", p.logs.String())
				}
			})
			return p
		}
		if attempt < 3 && strings.Contains(p.logs.String(), "address already in use") {
			t.Logf("rcsd start %d: a port was taken meanwhile; trying others", attempt)
			continue
		}
		t.Fatalf("%v; logs:\n%s", err, p.logs.String())
	}
}

func startIn(t testing.TB, dir string, extra []string) (*Proc, error) {
	ports := FreePorts(t, 3)
	p := &Proc{Port: ports[0], TLSPort: ports[1], HTTPPort: ports[2], Dir: dir, logs: &syncBuffer{}, t: t,
		exited: make(chan struct{})}
	defaults := [][2]string{
		{"--storage", "file:" + filepath.Join(p.Dir, "data")},
		{"--http.listen", "127.0.0.1:" + strconv.Itoa(p.HTTPPort)},
		{"--domain", "rcs.local"},
	}
	p.Args = nil
	for _, d := range defaults {
		if !slices.Contains(extra, d[0]) { // the test's own value wins
			p.Args = append(p.Args, d[0], d[1])
		}
	}
	p.Args = append(p.Args, extra...)
	args := append([]string{"serve",
		"--sip.listen", fmt.Sprintf("udp://127.0.0.1:%d,tcp://127.0.0.1:%d,tls://127.0.0.1:%d", p.Port, p.Port, p.TLSPort),
		"--log.level", "debug",
	}, p.Args...)
	p.cmd = exec.Command(Binary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", p.HTTPPort))
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return p, nil
			}
		}
		select {
		case <-p.exited:
			return p, fmt.Errorf("rcsd exited before it was ready (%v)", p.waitErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return p, errors.New("rcsd did not become ready within 15s")
}

// Logs returns what rcsd printed so far.
func (p *Proc) Logs() string { return p.logs.String() }

// Stop sends SIGTERM and waits for a clean exit.
func (p *Proc) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.waitErr != nil {
			p.t.Errorf("rcsd exited with %v", p.waitErr)
		}
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.t.Errorf("rcsd did not stop on SIGTERM")
	}
}

// Kill ends rcsd with SIGKILL (a crash: nothing flushed, no goodbye) and
// waits for it to be gone.
func (p *Proc) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Run runs an rcsd subcommand with the process's common flags.
func (p *Proc) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, Binary(p.t), append(args, p.Args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
