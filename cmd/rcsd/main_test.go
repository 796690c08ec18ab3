package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseArgsFlagsAnywhere(t *testing.T) {
	for _, argv := range [][]string{
		{"subscriber", "add", "sip:a@rcs.local", "--password", "pw", "--storage=memory:"},
		{"--storage", "memory:", "subscriber", "--password=pw", "add", "sip:a@rcs.local"},
		{"subscriber", "--storage", "memory:", "add", "--password", "pw", "sip:a@rcs.local"},
	} {
		a, err := parseArgs(argv)
		require.NoError(t, err, argv)
		assert.Equal(t, []string{"subscriber", "add", "sip:a@rcs.local"}, a.pos, argv)
		assert.Equal(t, map[string]string{"password": "pw", "storage": "memory:"}, a.flags, argv)
	}
	_, err := parseArgs([]string{"serve", "--config"})
	assert.ErrorContains(t, err, "needs a value")
	_, err = parseArgs([]string{"serve", "--domain", "a", "--domain", "b"})
	assert.ErrorContains(t, err, "given twice")
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, &out, &out)
	return out.String(), err
}

// With no server running, the subscriber commands work on the store itself.
func TestSubscriberCommandsDirect(t *testing.T) {
	store := "--storage=file:" + filepath.Join(t.TempDir(), "data")
	out, err := runCLI(t, "subscriber", "add", "sip:alice@rcs.local", "tel:+8613800000001", "--password", "pw", store)
	require.NoError(t, err, out)
	assert.Equal(t, "added alice@rcs.local (sip:alice@rcs.local, tel:+8613800000001)\n", out)

	out, err = runCLI(t, store, "subscriber", "add", "sip:bob@rcs.local", "--impi", "bob-private", "--k", "465b5ce8b199b49faa5f0a2ee238a6bc",
		"--opc", "cd63cb71954a9f4e48a5994e37a02baf", "--amf", "b9b9", "--password", "bobpw")
	require.NoError(t, err, out)

	out, err = runCLI(t, "subscriber", "show", "tel:+8613800000001", store)
	require.NoError(t, err, out)
	assert.Contains(t, out, `"impi": "alice@rcs.local"`)
	assert.NotContains(t, out, "ha1", "secrets are never printed")

	out, err = runCLI(t, "subscriber", "show", "bob-private", store)
	require.NoError(t, err, out)
	assert.Contains(t, out, `"aka": true`)

	out, err = runCLI(t, "subscriber", "list", store)
	require.NoError(t, err, out)
	assert.Equal(t, "alice@rcs.local\tsip:alice@rcs.local,tel:+8613800000001\tdigest=true aka=false\nbob-private\tsip:bob@rcs.local\tdigest=true aka=true\n", out)

	out, err = runCLI(t, "subscriber", "delete", "sip:alice@rcs.local", store)
	require.NoError(t, err, out)
	assert.Equal(t, "deleted alice@rcs.local\n", out)
	_, err = runCLI(t, "subscriber", "show", "alice@rcs.local", store)
	assert.ErrorContains(t, err, "not found")

	// Bad input is refused with the reason.
	_, err = runCLI(t, "subscriber", "add", "sip:carol@rcs.local", store)
	assert.ErrorContains(t, err, "needs a password or AKA keys")
	_, err = runCLI(t, "subscriber", "add", "sip:carol@rcs.local", "--k", "00", "--op", "00", store)
	assert.ErrorContains(t, err, "k wants 16 bytes")
	_, err = runCLI(t, "subscriber", "add", "mailto:carol@rcs.local", "--password", "x", store)
	assert.ErrorContains(t, err, "not sip, sips or tel")
	_, err = runCLI(t, "subscriber", "add", "sip:carol@rcs.local", "--password", "x", "--bogus", "1", store)
	assert.ErrorContains(t, err, "unknown flag --bogus")
}

// 100 000 subscribers import in seconds.
func TestImport100k(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 100 000 subscribers")
	}
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("impu,impi,password,k,op,opc,amf\n")
	for i := 0; i < 100000; i++ {
		fmt.Fprintf(&csv, "sip:user%06d@rcs.local,,secret%d,,,,\n", i, i)
	}
	csv.WriteString("tel:+8613800000001 sip:aka@rcs.local,aka@rcs.local,,465b5ce8b199b49faa5f0a2ee238a6bc,cdc202d5123e20f62b6d676ac72cb318,,b9b9\n")
	file := filepath.Join(dir, "subs.csv")
	require.NoError(t, os.WriteFile(file, []byte(csv.String()), 0o600))
	store := "--storage=file:" + filepath.Join(dir, "data")
	start := time.Now()
	out, err := runCLI(t, "subscriber", "import", file, store)
	elapsed := time.Since(start)
	require.NoError(t, err, out)
	assert.Contains(t, out, "imported 100001 subscribers")
	t.Logf("imported 100 001 subscribers in %s", elapsed)
	assert.Less(t, elapsed, 20*time.Second, "100k must import in seconds (even under -race)")

	out, err = runCLI(t, "subscriber", "show", "tel:+8613800000001", store)
	require.NoError(t, err, out)
	assert.Contains(t, out, `"aka": true`)
	out, err = runCLI(t, "subscriber", "list", "--after", "user099998@rcs.local", store)
	require.NoError(t, err, out)
	assert.Equal(t, "user099999@rcs.local\tsip:user099999@rcs.local\tdigest=true aka=false\n", out)

	// A bad file names every bad line and stores nothing.
	bad := filepath.Join(dir, "bad.csv")
	require.NoError(t, os.WriteFile(bad, []byte("impu,impi,password\nsip:x@rcs.local,,pw\nnot-a-uri,,pw\nsip:y@rcs.local,,\n"), 0o600))
	_, err = runCLI(t, "subscriber", "import", bad, store)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 3")
	assert.Contains(t, err.Error(), "line 4")
	_, err = runCLI(t, "subscriber", "show", "x@rcs.local", store)
	assert.ErrorContains(t, err, "not found")
}

func TestServeRejectsBadConfig(t *testing.T) {
	_, err := runCLI(t, "serve", "--storage", "memory:", "--sip.listen", "sctp://127.0.0.1:1", "--log.level", "loud")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "sip.listen")
	assert.Contains(t, err.Error(), "log.level")
}
