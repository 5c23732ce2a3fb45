package etcddcs_test

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
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/internal/freeport"
)

// writeCerts makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, as PEM files in dir.
func writeCerts(t *testing.T, dir string) (ca, serverCert, serverKey, clientCert, clientKey string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalECPrivateKey(k)
		require.NoError(t, err)
		return write(name, "EC PRIVATE KEY", der)
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgha test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	ca = write("ca.pem", "CERTIFICATE", caDER)

	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		require.NoError(t, err)
		return write(cn+".pem", "CERTIFICATE", der), writeKey(cn+"-key.pem", k)
	}
	serverCert, serverKey = issue(2, "server", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	clientCert, clientKey = issue(3, "client", x509.ExtKeyUsageClientAuth, nil)
	return ca, serverCert, serverKey, clientCert, clientKey
}

// TestTLSAndAuth runs a second embedded etcd that requires client
// certificates and has auth enabled, and checks the TLS file options, the
// username/password options and the mapping of auth failures.
func TestTLSAndAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, srvCert, srvKey, cliCert, cliKey := writeCerts(t, dir)

	cfg := embed.NewConfig()
	cfg.Name = "etcddcs-tls"
	cfg.Dir = filepath.Join(dir, "data")
	cu := url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", freeport.MustGet(t))}
	pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freeport.MustGet(t))}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ClientTLSInfo = transport.TLSInfo{CertFile: srvCert, KeyFile: srvKey, TrustedCAFile: ca, ClientCertAuth: true}
	cfg.LogLevel = "fatal"
	cfg.UnsafeNoFsync = true
	cfg.BcryptCost = 4 // bcrypt.MinCost: password checks in microseconds, not seconds under -race
	e, err := embed.StartEtcd(cfg)
	require.NoError(t, err)
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		require.FailNow(t, "TLS etcd not ready")
	}
	ctx := testCtx(t)
	path := dcs.Path{Scope: "tls"}

	// Certificate files: the store works over TLS with a client certificate.
	files := etcddcs.Config{Endpoints: []string{cu.String()}, Path: path, Name: "a", CAFile: ca, CertFile: cliCert, KeyFile: cliKey}
	s, err := etcddcs.New(ctx, files)
	require.NoError(t, err)
	_, err = s.AcquireLeader(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	// A ready-made tls.Config works the same.
	tlsInfo := transport.TLSInfo{CertFile: cliCert, KeyFile: cliKey, TrustedCAFile: ca}
	tlsCfg, err := tlsInfo.ClientConfig()
	require.NoError(t, err)
	s, err = etcddcs.New(ctx, etcddcs.Config{Endpoints: []string{cu.String()}, Path: path, Name: "b", TLS: tlsCfg})
	require.NoError(t, err)
	c, err := s.Cluster(ctx)
	require.NoError(t, err)
	require.Equal(t, "a", c.LeaderName())
	require.NoError(t, s.Close())

	// Without the CA the server is not trusted: requests time out as
	// unavailable (the client keeps retrying the handshake).
	s, err = etcddcs.New(ctx, etcddcs.Config{
		Endpoints: []string{cu.String()}, Path: path, Name: "c", RetryTimeout: time.Second,
		TLS: &tls.Config{MinVersion: tls.VersionTLS12},
	})
	require.NoError(t, err)
	_, err = s.KeepAlive(ctx, 30*time.Second)
	require.ErrorIs(t, err, dcs.ErrUnavailable)
	require.NoError(t, s.Close())

	// Enable auth: root, and a user that may only read the cluster prefix.
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{cu.String()}, TLS: tlsCfg, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer root.Close()
	_, err = root.RoleAdd(ctx, "root")
	if err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		require.NoError(t, err)
	}
	_, err = root.UserAdd(ctx, "root", "rootpw")
	require.NoError(t, err)
	_, err = root.UserGrantRole(ctx, "root", "root")
	require.NoError(t, err)
	_, err = root.RoleAdd(ctx, "ro")
	require.NoError(t, err)
	_, err = root.RoleGrantPermission(ctx, "ro", path.Prefix(), clientv3.GetPrefixRangeEnd(path.Prefix()), clientv3.PermissionType(clientv3.PermRead))
	require.NoError(t, err)
	_, err = root.UserAdd(ctx, "reader", "readerpw")
	require.NoError(t, err)
	_, err = root.UserGrantRole(ctx, "reader", "ro")
	require.NoError(t, err)
	_, err = root.AuthEnable(ctx)
	require.NoError(t, err)

	withUser := func(user, pw string) etcddcs.Config {
		c := files
		c.Username, c.Password = user, pw
		return c
	}
	// Right credentials.
	s, err = etcddcs.New(ctx, withUser("root", "rootpw"))
	require.NoError(t, err)
	_, err = s.SetConfig(ctx, map[string]any{"ttl": 30}, dcs.Unconditional)
	require.NoError(t, err)
	require.NoError(t, s.PutMember(ctx, dcs.MemberData{Role: dcs.RoleReplica}))
	require.NoError(t, s.Close())

	// Wrong password: New fails clearly.
	_, err = etcddcs.New(ctx, withUser("root", "wrong"))
	require.ErrorContains(t, err, "authentication failed")
	require.False(t, dcs.IsTransient(err))

	// Read-only user: reads work, writes fail with a permission error that is
	// not mistaken for unavailability.
	s, err = etcddcs.New(ctx, withUser("reader", "readerpw"))
	require.NoError(t, err)
	defer s.Close()
	c, err = s.Cluster(ctx)
	require.NoError(t, err)
	require.NotNil(t, c.Config)
	err = s.InitializeRace(ctx, "")
	require.ErrorContains(t, err, "permission")
	require.False(t, dcs.IsTransient(err))
	err = s.PutMember(ctx, dcs.MemberData{Role: dcs.RoleReplica}) // etcd grants leases to any user
	require.ErrorContains(t, err, "permission")
	require.False(t, dcs.IsTransient(err))
}
