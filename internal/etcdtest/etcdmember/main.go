// Command etcdmember runs one member of an etcd cluster (the embedded etcd
// server of the module's etcd version) as an OS process, so that tests can
// SIGKILL or SIGSTOP a single member (package etcdtest, StartCluster). It
// runs until SIGTERM or SIGINT.
//
// Flags: -name, -dir, -client (URL), -peer (URL), -initial-cluster
// (name=peerURL,...), -state (new or existing), -heartbeat-ms and
// -election-ms (raft timing, default 100 and 1000).
//
// Test support; not covered by compatibility promises.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("etcdmember", flag.ContinueOnError)
	name := fs.String("name", "", "member name")
	dir := fs.String("dir", "", "data directory")
	client := fs.String("client", "", "client URL (listen and advertise)")
	peer := fs.String("peer", "", "peer URL (listen and advertise)")
	initial := fs.String("initial-cluster", "", "name=peerURL,... of every member")
	state := fs.String("state", "new", "initial cluster state: new or existing")
	heartbeat := fs.Uint("heartbeat-ms", 100, "raft heartbeat interval in milliseconds")
	election := fs.Uint("election-ms", 1000, "raft election timeout in milliseconds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || *dir == "" || *client == "" || *peer == "" || *initial == "" {
		return fmt.Errorf("-name, -dir, -client, -peer and -initial-cluster are required")
	}
	cu, err := url.Parse(*client)
	if err != nil {
		return fmt.Errorf("-client: %w", err)
	}
	pu, err := url.Parse(*peer)
	if err != nil {
		return fmt.Errorf("-peer: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = *initial
	cfg.ClusterState = *state
	cfg.InitialClusterToken = "etcdtest"
	cfg.TickMs, cfg.ElectionMs = *heartbeat, *election
	// Accept client keepalive pings every 500 ms (etcd's default minimum is
	// 5 s): the tests' own admin clients ping every second to skip a paused
	// member quickly. Agents keep their own, production, settings.
	cfg.GRPCKeepAliveMinTime = 500 * time.Millisecond
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"stderr"}
	cfg.UnsafeNoFsync = true // tests only: speed over durability
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-e.Server.ReadyNotify():
		fmt.Fprintln(os.Stderr, "etcdmember: ready", *name, *client)
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("not ready after 5 minutes")
	}
	select {
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	}
}
