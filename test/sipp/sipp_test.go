// Package sipp runs SIPp scenarios against a real rcsd process. SIPp is a
// required tool here (make test installs it): its absence fails the tests.
package sipp

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"rcsd/test/rcsdproc"
)

func sippPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sipp")
	if err != nil {
		t.Fatal("sipp not found: run `make test` (it installs sip-tester) or apt-get install sip-tester")
	}
	return p
}

// tlsBridge stands in for SIPp's TLS transport, which Debian builds
// without ("To use a TLS transport you must compile SIPp with OpenSSL"):
// SIPp speaks TCP to the bridge, the bridge speaks real TLS to rcsd's
// tls:// listener, one TLS connection per SIPp connection. It returns the
// bridge's port.
func tlsBridge(t *testing.T, target string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := tls.Dial("tcp", target, &tls.Config{InsecureSkipVerify: true})
				if err != nil {
					t.Errorf("bridge: %v", err)
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.CloseWrite() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestRegisterDigestScenario registers several subscribers over UDP, TCP
// and TLS with SIPp's own Digest implementation; the scenario asserts the
// 200's headers with ereg check_it, so a missing header fails the call.
func TestRegisterDigestScenario(t *testing.T) {
	sipp := sippPath(t)
	// SIPp answers MD5 only and takes the first challenge: offer MD5 first.
	p := rcsdproc.Start(t, "--auth.digest_algorithms", "MD5,SHA-256")
	users := []string{"sippa", "sippb", "sippc"}
	for _, u := range users {
		out, err := p.Run(context.Background(), "subscriber", "add", "sip:"+u+"@rcs.local", "--password", u+"-secret")
		require.NoError(t, err, out)
	}
	scenario, err := filepath.Abs("register_digest.xml")
	require.NoError(t, err)
	for ti, tp := range []struct{ name, flag string }{{"UDP", "u1"}, {"TCP", "t1"}, {"TLS", "t1"}} {
		for ui, u := range users {
			imei := fmt.Sprintf("35209900-176148-%d%d", ti, ui)
			t.Run(tp.name+"/"+u, func(t *testing.T) {
				dir := t.TempDir()
				port := p.Port
				if tp.name == "TLS" {
					port = tlsBridge(t, fmt.Sprintf("127.0.0.1:%d", p.TLSPort))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, sipp, "127.0.0.1:"+strconv.Itoa(port),
					"-sf", scenario, "-t", tp.flag, "-m", "1", "-nostdin", "-timeout", "20s",
					"-i", "127.0.0.1", "-p", strconv.Itoa(rcsdproc.FreePort(t)),
					"-key", "user", u, "-key", "domain", "rcs.local", "-key", "imei", imei,
					"-au", u+"@rcs.local", "-ap", u+"-secret",
					"-trace_err", "-error_file", filepath.Join(dir, "errors.log"))
				cmd.Dir = dir
				out, err := cmd.CombinedOutput()
				if err != nil {
					errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
					t.Fatalf("sipp failed: %v\n%s\nerrors:\n%s", err, tail(string(out), 3000), errs)
				}
			})
		}
	}
	// Every subscriber now has one binding per transport (9 in all).
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.HTTPPort))
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Regexp(t, `(?m)^rcsd_registrations_active 9$`, string(body))
	require.Regexp(t, `(?m)^rcsd_register_total\{result="ok"\} 9$`, string(body))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
