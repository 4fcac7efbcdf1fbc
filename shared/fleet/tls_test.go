package fleet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/fleet/natstest"
)

// testCA makes a CA and a certificate it signs (for 127.0.0.1, usable by
// a server and a client), written as PEM files into dir.
func testCA(t *testing.T, dir, name string) (caFile, certFile, keyFile string, pool *x509.CertPool, cert tls.Certificate) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(file, typ string, der []byte) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, leafKey := key(), key()
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = write(name+"-ca.pem", "CERTIFICATE", caDER)
	certFile = write(name+".pem", "CERTIFICATE", leafDER)
	keyFile = write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
	pool = x509.NewCertPool()
	pool.AddCert(caCert)
	cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return caFile, certFile, keyFile, pool, cert
}

// TestTLS: NATS_TLS_CA makes the connection check the server's
// certificate, and NATS_TLS_CERT/NATS_TLS_KEY give the client's to a
// server that requires one; a server signed by another CA, or a client
// without a certificate, gets no connection.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key, pool, serverCert := testCA(t, dir, "hub")
	otherCA, _, _, _, _ := testCA(t, dir, "other")
	s := natstest.Run(t, t.TempDir(), -1, &server.Options{JetStream: true, TLS: true, TLSVerify: true,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}})
	url := s.ClientURL()
	if !strings.HasPrefix(url, "tls://127.0.0.1:") {
		t.Fatalf("server URL %s", url)
	}

	connects := func(f config.Fleet) (bool, string) {
		var mu sync.Mutex
		var log []string
		nc, err := Dial(url, &f, t.Name(), func(format string, a ...any) {
			mu.Lock()
			defer mu.Unlock()
			log = append(log, format)
		})
		if err != nil {
			return false, err.Error()
		}
		defer nc.Close()
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if nc.IsConnected() {
				return true, ""
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return false, fmt.Sprintf("%v; %s", nc.LastError(), strings.Join(log, "; "))
	}
	if ok, why := connects(config.Fleet{TLSCA: ca, TLSCert: cert, TLSKey: key}); !ok {
		t.Errorf("the right CA and a client certificate: no connection (%s)", why)
	}
	if ok, _ := connects(config.Fleet{TLSCA: otherCA, TLSCert: cert, TLSKey: key}); ok {
		t.Error("connected to a server whose certificate another CA signed")
	}
	if ok, _ := connects(config.Fleet{TLSCA: ca}); ok {
		t.Error("connected without the client certificate the server requires")
	}
	if _, err := Dial(url, &config.Fleet{TLSCA: ca, TLSCert: cert}, t.Name(), t.Logf); err == nil {
		t.Error("NATS_TLS_CERT without NATS_TLS_KEY accepted")
	}
}
