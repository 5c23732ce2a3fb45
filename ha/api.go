package ha

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// apiHandler serves the REST endpoints peers, load balancers and operators
// read (SPEC.md 4.2, 4.3): GET /patroni and the health checks, which answer
// GET with the status body and HEAD / OPTIONS with the status code alone, as
// HAProxy expects.
type apiHandler struct {
	status func() *Status
	now    func() time.Time
	node   *Node // nil: health checks only
}

// healthPaths maps a first path segment to its health check.
var healthPaths = map[string]func(h *apiHandler, s *Status, r *http.Request) bool{
	"":               (*apiHandler).primaryOK,
	"primary":        (*apiHandler).primaryOK,
	"master":         (*apiHandler).primaryOK,
	"read-write":     (*apiHandler).primaryOK,
	"leader":         func(_ *apiHandler, s *Status, _ *http.Request) bool { return s.IsLeader },
	"standby-leader": func(*apiHandler, *Status, *http.Request) bool { return false },
	"standby_leader": func(*apiHandler, *Status, *http.Request) bool { return false },
	"replica":        (*apiHandler).replicaOK,
	"read-only": func(h *apiHandler, s *Status, r *http.Request) bool {
		return h.primaryOK(s, r) || h.replicaOK(s, r)
	},
	"health": func(_ *apiHandler, s *Status, _ *http.Request) bool { return s.State == "running" },
	// Quorum mode runs as priority mode (package replication), so no node
	// is a quorum standby.
	"sync": func(h *apiHandler, s *Status, r *http.Request) bool {
		return h.clusterKnown(s) && s.SyncStandby && h.replicaOK(s, r)
	},
	"synchronous": func(h *apiHandler, s *Status, r *http.Request) bool {
		return h.clusterKnown(s) && s.SyncStandby && h.replicaOK(s, r)
	},
	"quorum": func(*apiHandler, *Status, *http.Request) bool { return false },
	"async": func(h *apiHandler, s *Status, r *http.Request) bool {
		return h.clusterKnown(s) && !s.SyncStandby && h.replicaOK(s, r)
	},
	"asynchronous": func(h *apiHandler, s *Status, r *http.Request) bool {
		return h.clusterKnown(s) && !s.SyncStandby && h.replicaOK(s, r)
	},
	"read-only-sync": func(h *apiHandler, s *Status, r *http.Request) bool {
		return h.clusterKnown(s) && (h.primaryOK(s, r) || (s.SyncStandby && h.replicaOK(s, r)))
	},
	"read-only-synchronous": func(h *apiHandler, s *Status, r *http.Request) bool {
		return h.clusterKnown(s) && (h.primaryOK(s, r) || (s.SyncStandby && h.replicaOK(s, r)))
	},
	"read-only-quorum": func(h *apiHandler, s *Status, r *http.Request) bool {
		return h.clusterKnown(s) && h.primaryOK(s, r)
	},
}

// clusterKnown: the node has a DCS view younger than the TTL.
func (h *apiHandler) clusterKnown(s *Status) bool {
	return !s.DCSLastSeen.IsZero() && h.now().Before(s.DCSLastSeen.Add(s.TTL))
}

func (h *apiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.status()
	seg := strings.Trim(r.URL.Path, "/")
	if i := strings.IndexByte(seg, '/'); i >= 0 {
		seg = seg[:i]
	}
	if h.serveAPI(w, r, seg) {
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		http.Error(w, "Not Implemented", http.StatusNotImplemented)
		return
	}
	code := http.StatusServiceUnavailable
	switch {
	case seg == "patroni" && r.Method == http.MethodGet:
		code = http.StatusOK
	case seg == "liveness":
		if h.live(s) {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		return
	case seg == "readiness":
		if h.ready(s, r) {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		return
	default:
		if check, ok := healthPaths[seg]; ok && check(h, s, r) && h.tagsMatch(s, r, seg) {
			code = http.StatusOK
		}
	}
	if r.Method != http.MethodGet {
		w.WriteHeader(code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(s.patroniJSON())
}

func (h *apiHandler) primaryOK(s *Status, _ *http.Request) bool {
	return s.IsLeader && s.State == "running" && !s.InRecovery
}

// replicaOK is Patroni's replica check: running replica, not tagged
// noloadbalance, within ?lag= of the leader, in ?replication_state=.
func (h *apiHandler) replicaOK(s *Status, r *http.Request) bool {
	if s.State != "running" || !s.InRecovery || s.Tags.NoLoadBalance() {
		return false
	}
	q := r.URL.Query()
	if lagS := q.Get("lag"); lagS != "" {
		lag, err := parseBytes(lagS)
		if err != nil {
			return false
		}
		if s.LeaderOptime > s.ReplayedLocation+lag {
			return false
		}
	}
	if rs := q.Get("replication_state"); rs != "" && rs != s.ReplicationState {
		return false
	}
	return true
}

// tagsMatch applies ?tag_<key>=<value> filters, except on leader paths.
func (h *apiHandler) tagsMatch(s *Status, r *http.Request, seg string) bool {
	switch seg {
	case "", "primary", "master", "read-write", "leader", "standby-leader", "standby_leader":
		return true
	}
	for k, vs := range r.URL.Query() {
		name, ok := strings.CutPrefix(k, "tag_")
		if !ok {
			continue
		}
		v, present := s.Tags[name]
		if !present {
			return false
		}
		got := fmt.Sprint(v)
		if _, isStr := v.(string); !isStr {
			got = strings.ToLower(got)
		}
		for _, want := range vs {
			if got != want {
				return false
			}
		}
	}
	return true
}

// live: the loop ran recently (ttl on a primary, 2*ttl otherwise).
func (h *apiHandler) live(s *Status) bool {
	if s.Paused {
		return true
	}
	threshold := 2 * s.TTL
	if s.IsLeader {
		threshold = s.TTL
	}
	return h.now().Before(s.Taken.Add(threshold))
}

// ready: a leader, or a streaming replica within ?lag= (default
// maximum_lag_on_failover) of the leader.
func (h *apiHandler) ready(s *Status, r *http.Request) bool {
	if s.IsLeader {
		return true
	}
	if s.State != "running" || s.ReplicationState != "streaming" {
		return false
	}
	lag := s.MaximumLagOnFailover
	if lagS := r.URL.Query().Get("lag"); lagS != "" {
		v, err := parseBytes(lagS)
		if err != nil {
			return false
		}
		lag = v
	}
	pos := s.ReplayedLocation
	if r.URL.Query().Get("mode") == "write" {
		pos = s.ReceivedLocation
	}
	return s.LeaderOptime-pos <= lag
}

// parseBytes parses a byte count with an optional unit (B, kB, MB, GB, TB),
// as Patroni's ?lag= does.
func parseBytes(v string) (int64, error) {
	v = strings.TrimSpace(v)
	i := strings.IndexFunc(v, func(r rune) bool { return !unicode.IsDigit(r) })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad byte count %q", v)
	}
	mult := map[string]int64{"": 1, "B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("bad unit in %q", v)
	}
	return n * mult, nil
}
