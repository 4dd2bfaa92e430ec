package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// PKI is a test's own certificate authority and a server certificate it
// issued for localhost (and no IP address: 127.0.0.1 is a host name the
// certificate does not match), as PEM files in a folder the
// postgres user can read (a server the test starts runs as postgres when
// the test runs as root).
type PKI struct {
	Dir string
	// CAFile is the authority's certificate; OtherCAFile another
	// authority's, which did not issue the server's.
	CAFile, OtherCAFile string
	// CertFile and KeyFile are the server's certificate and key; the key
	// is owned by the server's user, mode 0600, as Postgres demands.
	CertFile, KeyFile string
	// Server is the server's key pair, for a listener in the test.
	Server tls.Certificate
}

// NewPKI makes a PKI under a temporary folder removed at cleanup.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir, err := os.MkdirTemp("", "saga-pki-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &PKI{Dir: dir}
	caKey, caCert, caDER := authority(t, "saga test CA")
	_, _, otherDER := authority(t, "another CA")
	p.CAFile, p.OtherCAFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other-ca.pem")
	writePEM(t, p.CAFile, "CERTIFICATE", caDER, 0o644)
	writePEM(t, p.OtherCAFile, "CERTIFICATE", otherDER, 0o644)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p.CertFile, p.KeyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	writePEM(t, p.CertFile, "CERTIFICATE", der, 0o644)
	writePEM(t, p.KeyFile, "EC PRIVATE KEY", keyDER, 0o600)
	if os.Getuid() == 0 {
		if u, err := user.Lookup("postgres"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			if err := os.Chown(p.KeyFile, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.Server = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return p
}

func authority(t testing.TB, name string) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

func writePEM(t testing.TB, path, kind string, der []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}
