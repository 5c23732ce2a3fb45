package ha

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/pg"
)

// Failsafe mode (SPEC.md 3.10): when the DCS is out of reach, a primary
// keeps running as long as every member listed in /failsafe acknowledges
// it (POST /failsafe answered 200 "Accepted"); a member that acknowledged
// it treats it as the leader for a TTL and does not race. The leader keeps
// /failsafe listing every member with an api_url, itself included.

// failsafeAnnounce is a leader that announced itself by POST /failsafe.
type failsafeAnnounce struct {
	name, apiURL, connURL string
	until                 time.Time
}

// failsafeBody is the body of POST /failsafe.
type failsafeBody struct {
	Name    string           `json:"name"`
	ConnURL string           `json:"conn_url"`
	APIURL  string           `json:"api_url"`
	Slots   map[string]int64 `json:"slots,omitempty"`
}

// inFailsafe reports whether this primary's leadership is currently
// extended by the members' acknowledgement.
func (n *Node) inFailsafe() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.clock.Now().Before(n.failsafeUntil)
}

// failsafeDue reports whether the members' acknowledgement should be
// renewed: a third of the TTL it bought has passed (or there is none).
func (n *Node) failsafeDue() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.failsafeUntil.Sub(n.clock.Now()) < n.tm.ttl*2/3
}

// writeFailsafe keeps /failsafe listing every member with an api_url and
// this node, when failsafe mode is on (the leader, each cycle).
func (n *Node) writeFailsafe(ctx context.Context, c *dcs.Cluster) {
	if !n.dyn.FailsafeMode || c == nil {
		return
	}
	want := map[string]string{n.cfg.Name: n.cfg.APIURL}
	for _, m := range c.Members {
		if m.Data.APIURL != "" {
			want[m.Name] = m.Data.APIURL
		}
	}
	if c.Failsafe != nil && maps.Equal(c.Failsafe.Members, want) {
		return
	}
	if err := n.store.SetFailsafe(ctx, want); err != nil {
		n.log.Warn("writing /failsafe", "error", err)
	}
}

// confirmFailsafe asks every other member listed in the last /failsafe
// seen to acknowledge this node as the primary. Only when all of them
// answer 200 "Accepted" does it extend leadership by a TTL and report true.
// The lease keeper calls it when a leader's renewal fails in failsafe mode.
func (n *Node) confirmFailsafe(ctx context.Context, c *dcs.Cluster) bool {
	if c == nil || c.Failsafe == nil {
		return false
	}
	members := c.Failsafe.Members
	if _, listed := members[n.cfg.Name]; !listed {
		n.log.Warn("failsafe: I am not listed in /failsafe")
		return false
	}
	body, _ := json.Marshal(failsafeBody{Name: n.cfg.Name, ConnURL: n.pg.ConnURL(), APIURL: n.cfg.APIURL})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for name, api := range members {
		if name == n.cfg.Name {
			continue
		}
		wg.Go(func() {
			if err := n.postFailsafe(ctx, api, body); err != nil {
				mu.Lock()
				failed = append(failed, name+": "+err.Error())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		n.log.Warn("failsafe: not every member acknowledged me as the primary", "failed", strings.Join(failed, "; "))
		return false
	}
	n.mu.Lock()
	n.failsafeUntil = n.clock.Now().Add(n.tm.ttl)
	if n.leading {
		n.armFenceLocked()
	}
	n.mu.Unlock()
	// As after a renewal (and as Patroni does): every member acknowledged
	// this primary, so its watchdog is kept alive.
	_ = n.wd.Keepalive()
	n.log.Info("continue to run as a leader because failsafe mode is enabled and all members are accessible")
	return true
}

// postFailsafe sends one POST /failsafe to the member whose api_url is api.
func (n *Node) postFailsafe(ctx context.Context, api string, body []byte) error {
	url := strings.TrimSuffix(api, "/patroni")
	url = strings.TrimSuffix(url, "/") + "/failsafe"
	pctx, cancel := context.WithTimeout(ctx, n.cfg.ProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if u := n.cfg.API.Username; u != "" {
		req.SetBasicAuth(u, n.cfg.API.Password)
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "Accepted" {
		return fmt.Errorf("HTTP %d %q", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// failsafeLeader returns the leader announced by POST /failsafe while its
// announcement is fresh.
func (n *Node) failsafeLeader() (failsafeAnnounce, bool) {
	n.fsMu.Lock()
	defer n.fsMu.Unlock()
	a := n.fsLeader
	return a, a.name != "" && n.clock.Now().Before(a.until)
}

// withFailsafeLeader patches an unlocked snapshot with the leader that
// announced itself by POST /failsafe, so that this member follows it and
// does not race while the announcement is fresh (SPEC.md 3.10).
func (n *Node) withFailsafeLeader(c *dcs.Cluster) *dcs.Cluster {
	if c == nil || c.Leader != nil || !n.dyn.FailsafeMode {
		return c
	}
	a, ok := n.failsafeLeader()
	if !ok || a.name == n.cfg.Name {
		return c
	}
	m, found := c.Member(a.name)
	if !found {
		m = dcs.Member{Name: a.name, Data: dcs.MemberData{ConnURL: a.connURL, APIURL: a.apiURL, Role: dcs.RolePrimary, State: "running"}}
	}
	cc := *c
	cc.Leader = &dcs.Leader{Name: a.name, Member: m}
	return &cc
}

// postFailsafeHandler is POST /failsafe (member to member).
func (h *apiHandler) postFailsafeHandler(w http.ResponseWriter, r *http.Request) {
	n := h.node
	s := n.Status()
	if !s.FailsafeMode {
		text(w, http.StatusBadGateway, "failsafe_mode is not enabled")
		return
	}
	var body failsafeBody
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	if err := dec.Decode(&body); err != nil || body.Name == "" {
		text(w, http.StatusBadRequest, "invalid failsafe request: a JSON object with name, conn_url and api_url is expected")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	st, err := n.pg.Status(ctx)
	cancel()
	if err == nil && st.Running && st.Role == pg.RolePrimary {
		text(w, http.StatusInternalServerError, "Running as a leader")
		return
	}
	n.fsMu.Lock()
	n.fsLeader = failsafeAnnounce{name: body.Name, apiURL: body.APIURL, connURL: body.ConnURL, until: n.clock.Now().Add(s.TTL)}
	n.fsMu.Unlock()
	if err == nil {
		w.Header().Set("lsn", strconv.FormatInt(int64(max(st.ReceiveLSN, st.ReplayLSN)), 10))
	}
	text(w, http.StatusOK, "Accepted")
}

// getFailsafe is GET /failsafe: the /failsafe members last seen.
func (h *apiHandler) getFailsafe(w http.ResponseWriter) {
	n := h.node
	if !n.Status().FailsafeMode {
		text(w, http.StatusBadGateway, "failsafe_mode is not enabled")
		return
	}
	members := map[string]string{}
	if c := n.lastClusterSnapshot(); c != nil && c.Failsafe != nil {
		members = c.Failsafe.Members
	}
	b, _ := json.Marshal(members)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}
