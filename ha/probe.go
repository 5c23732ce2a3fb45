package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
)

// maxProbeBody bounds what a peer's /patroni answer may weigh.
const maxProbeBody = 1 << 20

// probePeers asks every target's REST API (GET api_url) in parallel, each
// bounded by timeout, and returns one Peer per target in target order. A
// dead peer costs at most timeout, whatever the number of peers.
func probePeers(ctx context.Context, client *http.Client, targets []failover.ProbeTarget, timeout time.Duration) []failover.Peer {
	out := make([]failover.Peer, len(targets))
	var wg sync.WaitGroup
	for i, tgt := range targets {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			out[i] = probePeer(pctx, client, tgt)
		})
	}
	wg.Wait()
	return out
}

func probePeer(ctx context.Context, client *http.Client, tgt failover.ProbeTarget) failover.Peer {
	p := failover.Peer{Name: tgt.Name}
	if tgt.APIURL == "" {
		p.Err = "no api_url published"
		return p
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tgt.APIURL, nil)
	if err != nil {
		p.Err = fmt.Sprintf("bad api_url %q: %v", tgt.APIURL, err)
		return p
	}
	resp, err := client.Do(req)
	if err != nil {
		p.Err = err.Error()
		return p
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	if err != nil {
		p.Err = fmt.Sprintf("reading answer: %v", err)
		return p
	}
	// Patroni answers /patroni with 200; the health-check paths answer 503
	// with the same body, and the body is what counts.
	if err := parsePatroniStatus(body, &p); err != nil {
		p.Err = fmt.Sprintf("HTTP %d: %v", resp.StatusCode, err)
		return p
	}
	p.Reachable = true
	return p
}

// parsePatroniStatus fills p from a GET /patroni body (pgha's or Patroni's).
func parsePatroniStatus(body []byte, p *failover.Peer) error {
	var v struct {
		State    string          `json:"state"`
		Role     string          `json:"role"`
		Timeline json.Number     `json:"timeline"`
		Tags     map[string]any  `json:"tags"`
		Watchdog bool            `json:"watchdog_failed"`
		XLog     json.RawMessage `json:"xlog"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("not a /patroni status: %v", err)
	}
	if v.Role == "" && v.State == "" {
		return fmt.Errorf("not a /patroni status: no role or state")
	}
	p.Role, p.State, p.WatchdogFailed, p.Tags = v.Role, v.State, v.Watchdog, dcs.Tags(v.Tags)
	if v.Timeline != "" {
		tl, err := v.Timeline.Int64()
		if err != nil {
			return fmt.Errorf("timeline %q is not an integer", v.Timeline)
		}
		p.Timeline = tl
	}
	var x struct {
		Location *int64 `json:"location"`
		Received int64  `json:"received_location"`
		Replayed int64  `json:"replayed_location"`
	}
	if len(v.XLog) > 0 && string(v.XLog) != "null" {
		if err := json.Unmarshal(v.XLog, &x); err != nil {
			return fmt.Errorf("xlog: %v", err)
		}
	}
	// Patroni's rule: a peer is a primary when it reports a primary role,
	// or xlog.location while running. A node whose Postgres is still
	// starting (e.g. as a standby after a demote) may still carry the
	// primary's xlog shape from before its crash: that is not a primary.
	p.InRecovery = !(x.Location != nil && v.State == "running" || dcs.IsPrimaryRole(v.Role))
	if x.Location != nil {
		p.Location = *x.Location
	}
	p.ReceivedLocation, p.ReplayedLocation = x.Received, x.Replayed
	return nil
}
