package redis

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// The tests run against real redis-server processes they start
// themselves: never a mock, and never a server the developer happens to
// run.

const installHint = "redis-server and redis-cli must be on PATH: `make test` installs them (Debian package redis-server)"

func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: %s", name, installHint)
	}
	return p
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// redis-server needs a concrete port (--port 0 disables TCP).
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// server is a redis-server started by a test.
type server struct {
	Addr string
	Port int
	cmd  *exec.Cmd
	log  string
}

// startServer starts a redis-server on a free port of 127.0.0.1 with
// persistence off and its files in a temp dir, waits until it answers and
// kills it when the test ends. extra are more command-line options.
func startServer(t testing.TB, extra ...string) *server {
	t.Helper()
	return startServerWith(t, func() []string { return extra })
}

// startServerWith is startServer with the extra options made again for
// each attempt, so that ports they name are chosen again too.
func startServerWith(t testing.TB, extra func() []string) *server {
	t.Helper()
	bin := requireTool(t, "redis-server")
	var lastErr error
	for range 5 { // the free port may be taken before the server binds it
		dir := t.TempDir()
		port := freePort(t)
		s := &server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, log: filepath.Join(dir, "redis.log")}
		args := append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--logfile", s.log, "--daemonize", "no",
		}, extra()...)
		s.cmd = exec.Command(bin, args...)
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("starting redis-server: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- s.cmd.Wait() }()
		if err := s.waitReady(exited); err != nil {
			_ = s.cmd.Process.Kill()
			lastErr = err
			continue
		}
		t.Cleanup(func() {
			_ = s.cmd.Process.Kill()
			<-exited
		})
		return s
	}
	t.Fatalf("redis-server did not start: %v", lastErr)
	return nil
}

// waitReady waits until the server answers PING (or asks for a password,
// which also means it is up).
func (s *server) waitReady(exited <-chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(s.log)
			return fmt.Errorf("exited (%v): %s", err, lastLines(string(b), 5))
		default:
		}
		if reply, err := ping(s.Addr); err == nil && (strings.HasPrefix(reply, "+PONG") || strings.HasPrefix(reply, "-NOAUTH")) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no answer on %s within 10s", s.Addr)
}

// Kill stops the server now (to test an unreachable Redis).
func (s *server) Kill() { _ = s.cmd.Process.Kill() }

func ping(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startCluster starts three masters without replicas, joins them with
// redis-cli --cluster create and waits until every node reports
// cluster_state:ok. It returns their addresses.
func startCluster(t testing.TB) []string {
	t.Helper()
	nodes := startClusterWith(t, "", func() []string { return nil })
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// startClusterWith is startCluster with more options for every node
// (made again for each start attempt) and requirepass/masterauth when
// password is set. It returns the servers; their Addr is the plain TCP
// port, which redis-cli uses to create the cluster.
func startClusterWith(t testing.TB, password string, extra func() []string) []*server {
	t.Helper()
	cli := requireTool(t, "redis-cli")
	var auth []string
	if password != "" {
		auth = []string{"-a", password, "--no-auth-warning"}
	}
	var nodes []*server
	var addrs []string
	for i := range 3 {
		dir := t.TempDir()
		s := startServerWith(t, func() []string {
			args := append([]string{"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", i)),
				"--cluster-node-timeout", "2000",
				// Not the default port+10000, which is past 65535 for
				// a fifth of the ephemeral ports.
				"--cluster-port", strconv.Itoa(freePort(t))}, extra()...)
			if password != "" {
				args = append(args, "--requirepass", password, "--masterauth", password)
			}
			return args
		})
		nodes = append(nodes, s)
		addrs = append(addrs, s.Addr)
	}
	args := append(append([]string{"--cluster", "create"}, addrs...), auth...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		for {
			out, err := exec.Command(cli, append([]string{"-p", strconv.Itoa(n.Port)}, append(auth, "cluster", "info")...)...).Output()
			if err == nil && strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node on port %d not ok within 20s: %v\n%s", n.Port, err, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}

// quietLogger drops go-redis's own log lines (dial retries while a test
// has stopped a server); the tests check the errors instead.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func init() { goredis.SetLogger(quietLogger{}) }
