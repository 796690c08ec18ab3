package main

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// `rcsd storage copy` moves a file: store to Redis and back (a real
// redis-server; make test installs it).
func TestStorageCopy(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	require.NoError(t, err, "redis-server not found: make test installs it")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)

	first := "file:" + filepath.Join(t.TempDir(), "data")
	out, err := runCLI(t, "subscriber", "add", "sip:alice@rcs.local", "tel:+8613800000001", "--password", "pw", "--storage", first)
	require.NoError(t, err, out)
	out, err = runCLI(t, "subscriber", "add", "sip:bob@rcs.local", "--k", "465b5ce8b199b49faa5f0a2ee238a6bc", "--opc", "cd63cb71954a9f4e48a5994e37a02baf", "--storage", first)
	require.NoError(t, err, out)

	out, err = runCLI(t, "storage", "copy", "--from", first, "--to", redisURL)
	require.NoError(t, err, out)
	assert.Equal(t, "copied 2 subscribers, 0 bindings of 0 public identities, 0 stored messages\n", out)
	out, err = runCLI(t, "subscriber", "show", "tel:+8613800000001", "--storage", redisURL)
	require.NoError(t, err, out)
	assert.Contains(t, out, `"impi": "alice@rcs.local"`)

	_, err = runCLI(t, "storage", "copy", "--from", first, "--to", redisURL)
	assert.ErrorContains(t, err, "not empty", "never merges into a store in use")

	back := "file:" + filepath.Join(t.TempDir(), "back")
	out, err = runCLI(t, "storage", "copy", "--from", redisURL, "--to", back)
	require.NoError(t, err, out)
	out, err = runCLI(t, "subscriber", "list", "--storage", back)
	require.NoError(t, err, out)
	assert.Equal(t, "alice@rcs.local\tsip:alice@rcs.local,tel:+8613800000001\tdigest=true aka=false\nbob@rcs.local\tsip:bob@rcs.local\tdigest=false aka=true\n", out)

	_, err = runCLI(t, "storage", "copy", "--from", first)
	assert.ErrorContains(t, err, "--to")
}
