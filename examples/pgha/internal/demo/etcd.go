package demo

import (
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/pgha/pgha/internal/freeport"
)

// etcd is the demo's single-member etcd, embedded in this process.
type etcd struct {
	e      *embed.Etcd
	client string // http://127.0.0.1:port
	addr   string // 127.0.0.1:port
}

// startEtcd starts etcd with its data in dir and its log in logFile.
func startEtcd(dir, logFile string) (*etcd, error) {
	cp, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	pp, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "demo"
	cfg.Dir = filepath.Join(dir, "etcd")
	cu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", cp)}
	pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", pp)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{logFile}
	cfg.UnsafeNoFsync = true // a demo: speed over durability
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting the embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, fmt.Errorf("the embedded etcd was not ready after 30 s (see %s)", logFile)
	}
	return &etcd{e: e, client: cu.String(), addr: cu.Host}, nil
}

func (e *etcd) stop() { e.e.Close() }
