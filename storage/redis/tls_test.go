package redis

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/storage"
	"rcsd/storage/storagetest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files
// and returns their paths and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestConformanceTLSPassword runs the suite over TLS with a password, the
// combination a lost AUTH or TLS setting on a reconnect would break.
func TestConformanceTLSPassword(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	tlsPort := freePort(t)
	startServer(t, "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", certFile, "--tls-auth-clients", "no", "--requirepass", "s3cret")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, Options{Addrs: []string{addr}, Password: "s3cret", Prefix: freshPrefix(),
			TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}})
	})
	// Without TLS on the TLS port, or with an untrusted certificate: no.
	_, err := Open(t.Context(), Options{Addrs: []string{addr}, Password: "s3cret",
		TLS: &tls.Config{ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}})
	require.Error(t, err, "certificate not trusted")
}

// TestConformanceClusterTLSPassword runs the suite on a 3-master Cluster
// that speaks TLS to clients and between its nodes and wants a password
// and a client certificate, opened from a rediss:// URL that names one
// seed node: every other node is reached at the address the Cluster
// hands out (CLUSTER SLOTS, MOVED, ASK), where a client that forgot the
// password or the TLS settings for those connections fails. The URL's
// tls_ca/tls_cert/tls_key are what an operator with a private CA uses.
func TestConformanceClusterTLSPassword(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t)
	const password = "cl-s3cret"
	nodes := startClusterWith(t, password, func() []string {
		return []string{"--tls-port", strconv.Itoa(freePort(t)), "--tls-cluster", "yes",
			"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", certFile,
			"--tls-auth-clients", "yes"}
	})
	out, err := exec.Command(requireTool(t, "redis-cli"), "-p", strconv.Itoa(nodes[0].Port), "-a", password,
		"--no-auth-warning", "config", "get", "tls-port").Output()
	require.NoError(t, err)
	fields := strings.Fields(string(out))
	require.Len(t, fields, 2, "config get tls-port: %q", out)
	seed := net.JoinHostPort("127.0.0.1", fields[1])
	url := "rediss://:" + password + "@" + seed + "/0?cluster=1&tls_ca=" + certFile +
		"&tls_cert=" + certFile + "&tls_key=" + keyFile
	storagetest.Run(t, func(t *testing.T) storage.Store {
		opts, err := ParseURL(url + "&prefix=" + freshPrefix())
		require.NoError(t, err)
		return open(t, opts)
	})

	// Every node served the suite, and only over TLS (a TLS handshake
	// with a plain port fails, so no command could have gone there).
	for _, n := range nodes {
		out, err := exec.Command(requireTool(t, "redis-cli"), "-p", strconv.Itoa(n.Port), "-a", password,
			"--no-auth-warning", "info", "stats").Output()
		require.NoError(t, err)
		m := regexp.MustCompile(`total_commands_processed:(\d+)`).FindStringSubmatch(string(out))
		require.NotNil(t, m, "info stats: %s", out)
		done, _ := strconv.Atoi(m[1])
		assert.Greater(t, done, 100, "node %s served the suite", n.Addr)
	}
	// Without a client certificate, or without the password: refused.
	opts, err := ParseURL("rediss://:" + password + "@" + seed + "/0?cluster=1&tls_ca=" + certFile)
	require.NoError(t, err)
	_, err = Open(t.Context(), opts)
	require.Error(t, err, "no client certificate")
	opts, err = ParseURL("rediss://" + seed + "/0?cluster=1&tls_ca=" + certFile + "&tls_cert=" + certFile + "&tls_key=" + keyFile)
	require.NoError(t, err)
	_, err = Open(t.Context(), opts)
	require.Error(t, err, "no password")
}
