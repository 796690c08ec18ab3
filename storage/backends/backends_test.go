package backends

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/storage"
	"rcsd/storage/bolt"
	"rcsd/storage/memory"
	"rcsd/storage/redis"
)

func TestOpen(t *testing.T) {
	tmp := t.TempDir()
	cases := []struct {
		name     string
		url      string
		wantType storage.Store // nil: Open must fail
		wantDir  string        // for file:, where rcsd.db must appear
		wantIs   error         // for failures, optional
		contains []string      // for failures: in the message
		absent   []string      // for failures: not in the message
	}{
		{name: "memory", url: "memory:", wantType: &memory.Store{}},
		{name: "memory with slashes", url: "memory://", wantType: &memory.Store{}},
		{name: "memory upper case", url: "MEMORY:", wantType: &memory.Store{}},
		{name: "file absolute", url: "file:" + filepath.Join(tmp, "abs"), wantType: &bolt.Store{}, wantDir: filepath.Join(tmp, "abs")},
		{name: "file URL", url: "file://" + filepath.Join(tmp, "url"), wantType: &bolt.Store{}, wantDir: filepath.Join(tmp, "url")},
		{name: "file URL localhost", url: "file://localhost" + filepath.Join(tmp, "local host"), wantType: &bolt.Store{}, wantDir: filepath.Join(tmp, "local host")},
		{name: "file URL escaped", url: "file://" + filepath.Join(tmp, "with%20space"), wantType: &bolt.Store{}, wantDir: filepath.Join(tmp, "with space")},
		{name: "redis unreachable", url: "redis://:s3cret@127.0.0.1:1/0", contains: []string{"redis", "127.0.0.1:1"}, absent: []string{"s3cret"}},
		{name: "redis bad option", url: "redis://:s3cret@127.0.0.1:6379/0?colour=blue", contains: []string{"colour"}, absent: []string{"s3cret"}},
		{name: "unknown scheme", url: "postgres://rcsd:s3cret@db/rcsd", contains: []string{"postgres://rcsd:xxxxx@db/rcsd", "unknown backend"}, absent: []string{"s3cret"}},
		{name: "not a URL", url: "./data", contains: []string{`"./data"`}},
		{name: "empty", url: "", contains: []string{`""`}},
		{name: "file without path", url: "file:", contains: []string{`"file:"`, "needs a directory"}},
		{name: "file URL without path", url: "file://", contains: []string{"needs a directory"}},
		{name: "file URL with host", url: "file://server/data", contains: []string{`"file://server/data"`, `host "server"`}},
		{name: "memory with path", url: "memory:foo", contains: []string{`"memory:foo"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), tc.url)
			if tc.wantType == nil {
				require.Error(t, err)
				assert.Nil(t, s)
				if tc.wantIs != nil {
					assert.ErrorIs(t, err, tc.wantIs)
				}
				for _, c := range tc.contains {
					assert.Contains(t, err.Error(), c)
				}
				for _, a := range tc.absent {
					assert.NotContains(t, err.Error(), a)
				}
				return
			}
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, s.Close()) })
			assert.IsType(t, tc.wantType, s)
			require.NoError(t, s.Ping(t.Context()))
			if tc.wantDir != "" {
				assert.FileExists(t, filepath.Join(tc.wantDir, bolt.FileName))
			}
		})
	}
}

func TestOpenRelativeFile(t *testing.T) {
	t.Chdir(t.TempDir())
	s, err := Open(t.Context(), "file:./data")
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = os.Stat(filepath.Join("data", bolt.FileName))
	require.NoError(t, err)
}

func TestOpenLocked(t *testing.T) {
	url := "file:" + t.TempDir()
	s, err := Open(t.Context(), url)
	require.NoError(t, err)
	defer s.Close()
	_, err = Open(t.Context(), url)
	require.ErrorIs(t, err, bolt.ErrLocked, "callers fall back to the running server on ErrLocked")
}

func TestOpenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Open(ctx, "memory:")
	require.ErrorIs(t, err, context.Canceled)
}

// A redis:// URL opens the Redis backend on a real redis-server (make
// test installs it; its absence fails the test).
func TestOpenRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	require.NoError(t, err, "redis-server not found: make test installs it")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--requirepass", "s3cret")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("redis://:s3cret@127.0.0.1:%d/0", port)
	var s storage.Store
	require.Eventually(t, func() bool {
		s, err = Open(t.Context(), url)
		return err == nil
	}, 10*time.Second, 100*time.Millisecond, "redis-server did not come up: %v", err)
	defer s.Close()
	assert.IsType(t, &redis.Store{}, s)
	require.NoError(t, s.Ping(t.Context()))
	_, err = Open(t.Context(), fmt.Sprintf("redis://:wrong@127.0.0.1:%d/0", port))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "wrong")
}

func TestRedact(t *testing.T) {
	cases := map[string]string{
		"redis://:s3cret@127.0.0.1:6379/0":         "redis://:xxxxx@127.0.0.1:6379/0",
		"rediss://rcsd:s3cret@a:1,b:2/0?cluster=1": "rediss://rcsd:xxxxx@a:1,b:2/0?cluster=1",
		"redis://rcsd@h:1/0":                       "redis://rcsd@h:1/0",
		"redis://h:1/0?tls_ca=/etc/ca.pem":         "redis://h:1/0?tls_ca=/etc/ca.pem",
		"file:./data":                              "file:./data",
		"memory:":                                  "memory:",
		"redis://u:s3%zzcret@h:1/0":                "redis://xxxxx@h:1/0", // unparseable escape
		"redis://u:s3cret@[::1:1/0":                "redis://xxxxx@[::1:1/0",
	}
	for in, want := range cases {
		got := Redact(in)
		assert.Equal(t, want, got, in)
		assert.NotContains(t, got, "s3", in)
	}
}
