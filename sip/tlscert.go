package sip

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// LoadOrCreateCertificate returns the TLS configuration for tls:// and
// wss:// listeners: the operator's certificate when certFile/keyFile are
// set; otherwise a self-signed one for hosts, kept under dir so that it
// survives restarts (handsets pinning it keep working), or only in memory
// when dir is empty. created reports a newly generated certificate.
func LoadOrCreateCertificate(certFile, keyFile, dir string, hosts []string) (cfg *tls.Config, created bool, err error) {
	if certFile == "" && dir != "" {
		certFile, keyFile = filepath.Join(dir, "tls-cert.pem"), filepath.Join(dir, "tls-key.pem")
		if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
			certPEM, keyPEM, err := selfSigned(hosts)
			if err != nil {
				return nil, false, err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, false, fmt.Errorf("tls: %w", err)
			}
			if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
				return nil, false, fmt.Errorf("tls: %w", err)
			}
			if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
				return nil, false, fmt.Errorf("tls: %w", err)
			}
			created = true
		}
	}
	var cert tls.Certificate
	if certFile == "" {
		certPEM, keyPEM, err := selfSigned(hosts)
		if err != nil {
			return nil, false, err
		}
		cert, err = tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, false, fmt.Errorf("tls: %w", err)
		}
		created = true
	} else {
		cert, err = tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, false, fmt.Errorf("tls: load %s: %w", certFile, err)
		}
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, created, nil
}

func selfSigned(hosts []string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("tls: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "rcsd", Organization: []string{"rcsd self-signed"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: certificate: %w", err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), nil
}
