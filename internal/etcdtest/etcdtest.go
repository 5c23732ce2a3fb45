// Package etcdtest starts etcd for tests, on free loopback ports in a
// temporary directory: [Start] runs an embedded single-member etcd inside
// the test process; [StartCluster] runs a multi-member cluster whose
// members are separate OS processes (the etcdmember program, built by
// [BuildMember] from the module's own etcd version), so that one member can
// be killed ([Member.Kill]), restarted on its data ([Member.Start]) or
// paused with SIGSTOP ([Member.Pause]), and the raft leader found
// ([Cluster.Leader]).
//
// Test support; not covered by compatibility promises.
package etcdtest

import (
	"fmt"
	"net/url"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/pgha/pgha/internal/freeport"
)

// Etcd is a running embedded etcd.
type Etcd struct {
	// Addr is the host:port of the client listener.
	Addr string
	// Admin is a direct client for the test's outside actions.
	Admin *clientv3.Client
	e     *embed.Etcd
	dir   string
}

// Start starts an embedded etcd and its admin client.
func Start(name string) (*Etcd, error) {
	dir, err := os.MkdirTemp("", "pgha-etcd-")
	if err != nil {
		return nil, err
	}
	clientPort, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	peerPort, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = dir
	cu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "fatal" // shutdown logs "errors" that are not
	cfg.LogOutputs = []string{"stderr"}
	cfg.UnsafeNoFsync = true // tests only: speed over durability
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("etcd not ready after 30 s")
	}
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{cu.String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.Close()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &Etcd{Addr: cu.Host, Admin: admin, e: e, dir: dir}, nil
}

// Stop closes the admin client, stops etcd and removes its directory.
func (e *Etcd) Stop() {
	_ = e.Admin.Close()
	e.e.Close()
	_ = os.RemoveAll(e.dir)
}
