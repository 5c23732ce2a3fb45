package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/cluster"
)

// apiCall sends method path (relative to the node's REST API) with body and
// returns the status code and the body.
func apiCall(t *testing.T, n *cluster.Node, method, path, body string) (int, string) {
	t.Helper()
	base := strings.TrimSuffix(n.APIURL(), "/patroni")
	req, err := http.NewRequestWithContext(within(t, 10*time.Second), method, base+path, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// Scheduled restart of the primary (RELIABILITY.md F7, SPEC.md 4.7): POST
// /restart with a schedule is accepted (202), shown in /patroni and the
// member key, refused a second time (409), in the past (422) or with a bad
// condition (400); at the scheduled time the primary's Postgres restarts in
// place: same leader tenure, same timeline, a new postmaster. DELETE
// /restart removes a schedule.
func TestScheduledRestartOfThePrimary(t *testing.T) {
	c := newCluster(t, cluster.Options{Mode: cluster.InProcess, Dynamic: shortTTL(nil)})
	finish := startChecker(t, c)
	p, err := c.WaitStable(within(t, 90*time.Second))
	require.NoError(t, err)
	ctx := within(t, 2*time.Minute)
	_, rev, err := c.LeaderRevision(ctx)
	require.NoError(t, err)
	tl, err := p.Timeline(ctx)
	require.NoError(t, err)
	pid, err := p.PostmasterPID()
	require.NoError(t, err)

	code, msg := apiCall(t, p, http.MethodPost, "/restart", `{"schedule": "2001-01-01T00:00:00+00:00"}`)
	require.Equal(t, http.StatusUnprocessableEntity, code, msg)
	code, msg = apiCall(t, p, http.MethodPost, "/restart", `{"schedule": "soon"}`)
	require.Equal(t, http.StatusBadRequest, code, msg)
	code, msg = apiCall(t, p, http.MethodPost, "/restart", `{"schedule": "2099-01-01T00:00:00+00:00", "role": "leader"}`)
	require.Equal(t, http.StatusBadRequest, code, msg)
	code, msg = apiCall(t, p, http.MethodDelete, "/restart", "")
	require.Equal(t, http.StatusNotFound, code, msg)

	// Schedule, then cancel.
	code, msg = apiCall(t, p, http.MethodPost, "/restart", `{"schedule": "2099-01-01T00:00:00+00:00"}`)
	require.Equal(t, http.StatusAccepted, code, msg)
	require.Equal(t, "Restart scheduled", msg)
	code, msg = apiCall(t, p, http.MethodPost, "/restart", `{"schedule": "2099-01-02T00:00:00+00:00"}`)
	require.Equal(t, http.StatusConflict, code, msg)
	code, msg = apiCall(t, p, http.MethodDelete, "/restart", "")
	require.Equal(t, http.StatusOK, code, msg)
	require.Equal(t, "scheduled restart deleted", msg)

	// Schedule a few seconds ahead, as the primary.
	at := time.Now().Add(4 * time.Second).UTC().Format(time.RFC3339)
	code, msg = apiCall(t, p, http.MethodPost, "/restart", `{"schedule": "`+at+`", "role": "primary"}`)
	require.Equal(t, http.StatusAccepted, code, msg)
	_, body := apiCall(t, p, http.MethodGet, "/patroni", "")
	var st struct {
		ScheduledRestart map[string]any `json:"scheduled_restart"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.NotNil(t, st.ScheduledRestart, "GET /patroni shows the schedule: %s", body)
	require.Equal(t, "primary", st.ScheduledRestart["role"])
	require.NoError(t, cluster.Eventually(within(t, 10*time.Second), func(ctx context.Context) error {
		cl, err := c.Store().Cluster(ctx)
		if err != nil {
			return err
		}
		m, ok := cl.Member(p.Name)
		if !ok || m.Data.ScheduledRestart == nil {
			return errors.New("the member key does not show scheduled_restart yet")
		}
		return nil
	}))

	require.NoError(t, cluster.Eventually(within(t, 40*time.Second), func(ctx context.Context) error {
		np, err := p.PostmasterPID()
		if err != nil || np == pid {
			return errors.New("not restarted yet")
		}
		if !p.Writable(ctx) {
			return errors.New("not writable yet")
		}
		return nil
	}))
	leader, rev2, err := c.LeaderRevision(ctx)
	require.NoError(t, err)
	require.Equal(t, p.Name, leader)
	require.Equal(t, rev, rev2, "the leader key was kept through the restart")
	tl2, err := p.Timeline(ctx)
	require.NoError(t, err)
	require.Equal(t, tl, tl2, "no timeline change")
	code, _ = apiCall(t, p, http.MethodDelete, "/restart", "")
	require.Equal(t, http.StatusNotFound, code, "the schedule is gone once carried out")
	_, err = c.WaitStable(within(t, 60*time.Second))
	require.NoError(t, err)
	t.Logf("scheduled restart of %s carried out: new postmaster, same leader tenure (rev %d) and timeline %d", p.Name, rev, tl)
	finish()
}
