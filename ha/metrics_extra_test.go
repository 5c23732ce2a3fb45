package ha_test

import (
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// fenceEvents reads pgha_fence_events_total from n's /metrics.
func fenceEvents(t *testing.T, n *fnode) string {
	t.Helper()
	rec := httptest.NewRecorder()
	n.node.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, 200, rec.Code)
	m := regexp.MustCompile(`(?m)^pgha_fence_events_total\{name="` + n.name + `",scope="demo"\} (\S+)$`).FindStringSubmatch(rec.Body.String())
	require.NotNil(t, m, "no pgha_fence_events_total in:\n%s", rec.Body.String())
	require.Contains(t, rec.Body.String(), "# TYPE pgha_fence_events_total counter")
	return m[1]
}

// The fence counter: 0 everywhere while nothing happens; 1 on the leader
// that was cut from the DCS and fenced itself, 0 on the others.
func TestMetricsFenceEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, nil).start()
		old := c.waitStable(time.Minute)
		for _, n := range c.nodes {
			require.Equal(t, "0", fenceEvents(t, n))
		}
		c.srv.Partition(old.name)
		c.waitFor(2*time.Minute, "the old leader fenced", func() bool { return !old.inst.Writable() && !old.node.Status().IsLeader })
		c.waitFor(time.Minute, "the fence counted", func() bool { return fenceEvents(t, old) == "1" })
		var others []string
		for _, o := range c.others(old) {
			others = append(others, o.name+"="+fenceEvents(t, o))
		}
		require.Equal(t, "0 0", strings.Join([]string{strings.Split(others[0], "=")[1], strings.Split(others[1], "=")[1]}, " "), "%v", others)
		c.srv.Heal(old.name)
	})
}
