package redis

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"rcsd/storage"
	"rcsd/storage/storagetest"
)

// startSentinel runs a redis-sentinel (Debian package redis-sentinel;
// make test installs it) watching master as "rcsd" and returns its address.
func startSentinel(t *testing.T, master *server) string {
	t.Helper()
	bin, err := exec.LookPath("redis-sentinel")
	if err != nil {
		t.Fatalf("redis-sentinel not found: `make test` installs it (Debian package redis-sentinel)")
	}
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "sentinel.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(
		"port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor rcsd 127.0.0.1 %d 1\nsentinel down-after-milliseconds rcsd 5000\n",
		port, dir, master.Port)), 0o600))
	cmd := exec.Command(bin, conf)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	require.Eventually(t, func() bool {
		reply, err := ping(addr)
		return err == nil && reply == "+PONG\r\n"
	}, 10*time.Second, 50*time.Millisecond, "sentinel did not start")
	return addr
}

// TestConformanceSentinel runs the suite through a Sentinel: the client
// asks it for the master "rcsd" and talks to that.
func TestConformanceSentinel(t *testing.T) {
	master := startServer(t)
	sentinel := startSentinel(t, master)
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, Options{Addrs: []string{sentinel}, MasterName: "rcsd", Prefix: freshPrefix()})
	})
	opts, err := ParseURL("redis://" + sentinel + "/0?master=rcsd")
	require.NoError(t, err)
	s := open(t, opts)
	require.NoError(t, s.Ping(t.Context()))
}
