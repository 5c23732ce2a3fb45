package daemon

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
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/examples/pgha/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pki is a test CA with a server and a client certificate in files.
type pki struct {
	dir                                                  string
	caFile, serverCert, serverKey, clientCert, clientKey string
	pool                                                 *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	p := &pki{dir: dir, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	write := func(name string, typ string, der []byte) string {
		f := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return f
	}
	p.caFile = write("ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		require.NoError(t, err)
		kb, err := x509.MarshalECPrivateKey(k)
		require.NoError(t, err)
		return write(name+".pem", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kb)
	}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

// serve starts the REST server of cfg with a stub API that answers code,
// and returns its address.
func serve(t *testing.T, cfg *config.Config, code int, reloads *atomic.Int32) (*server, string) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) })
	s, err := newServer(cfg, api, hclog.NewNullLogger(), func() { reloads.Add(1) })
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { _ = s.serve(ln); close(done) }()
	t.Cleanup(func() { _ = s.http.Close(); <-done })
	return s, ln.Addr().String()
}

func TestRESTServerTLSAndClientCertificates(t *testing.T) {
	p := newPKI(t)
	cfg := &config.Config{RestAPI: config.RestAPI{CertFile: p.serverCert, KeyFile: p.serverKey, CAFile: p.caFile,
		VerifyClient: "required", HTTPExtraHeaders: map[string]string{"X-Any": "1"},
		HTTPSExtraHeaders: map[string]string{"Strict-Transport-Security": "max-age=1"}}}
	var reloads atomic.Int32
	_, addr := serve(t, cfg, http.StatusOK, &reloads)

	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}, Timeout: 5 * time.Second}
	_, err := noCert.Get("https://" + addr + "/patroni")
	require.Error(t, err, "verify_client: required refuses a client without a certificate")

	cert, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	require.NoError(t, err)
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool,
		Certificates: []tls.Certificate{cert}}}, Timeout: 5 * time.Second}
	resp, err := withCert.Get("https://" + addr + "/patroni")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("X-Any"))
	assert.Equal(t, "max-age=1", resp.Header.Get("Strict-Transport-Security"))

	// optional: the handshake succeeds without a certificate (ha then
	// refuses the unsafe endpoints with 403).
	cfg.RestAPI.VerifyClient = "optional"
	_, addr = serve(t, cfg, http.StatusOK, &reloads)
	resp, err = noCert.Get("https://" + addr + "/patroni")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	// The peers' client trusts restapi.cafile and presents the certificate.
	client, err := peerClient(cfg)
	require.NoError(t, err)
	tc := client.Transport.(*http.Transport).TLSClientConfig
	assert.NotNil(t, tc.RootCAs)
	assert.Len(t, tc.Certificates, 1)
}

func TestRESTServerReloadAndPlainHTTP(t *testing.T) {
	cfg := &config.Config{RestAPI: config.RestAPI{VerifyClient: "none",
		HTTPSExtraHeaders: map[string]string{"X-TLS-Only": "1"}}}
	var reloads atomic.Int32
	_, addr := serve(t, cfg, http.StatusAccepted, &reloads)
	resp, err := http.Post("http://"+addr+"/reload", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("X-TLS-Only"))
	require.Eventually(t, func() bool { return reloads.Load() == 1 }, 5*time.Second, 10*time.Millisecond,
		"POST /reload answered 202 re-reads the configuration file")

	var none atomic.Int32
	_, addr = serve(t, cfg, http.StatusUnauthorized, &none)
	resp, err = http.Post("http://"+addr+"/reload", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	time.Sleep(100 * time.Millisecond)
	assert.Zero(t, none.Load(), "a refused POST /reload does not reload")
}

func TestRestartOnlySettings(t *testing.T) {
	a := &config.Config{Name: "n1", Scope: "s", Tags: map[string]any{"nofailover": true}}
	b := &config.Config{Name: "n1", Scope: "s"}
	assert.Equal(t, []string{"tags"}, restartOnly(a, b))
	assert.Empty(t, restartOnly(a, a))
}
