package ha

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
)

// APIConfig secures the REST API's unsafe endpoints (PATCH/PUT /config,
// POST /switchover, /failover, /restart, /reload, /reinitialize, DELETE
// /switchover, /restart), as Patroni's restapi section does. GETs are never
// authenticated. TLS itself is the http.Server's business (see the daemon).
type APIConfig struct {
	// Username and Password enable HTTP Basic auth on unsafe endpoints.
	Username, Password string
	// Allowlist lists the networks (CIDR, or single addresses) allowed to
	// call unsafe endpoints; empty allows everyone (subject to auth).
	Allowlist []string
	// AllowlistIncludeMembers also allows the hosts of members' api_url.
	AllowlistIncludeMembers bool
	// VerifyClient "optional" or "required" makes unsafe endpoints demand a
	// TLS client certificate (the server must request one).
	VerifyClient string
}

// maxBody bounds request bodies.
const maxBody = 1 << 20

// unsafe endpoints need the access checks.
func isUnsafe(method, seg string) bool {
	switch method + " " + seg {
	case "PATCH config", "PUT config", "POST reload", "POST restart", "DELETE restart", "DELETE switchover",
		"POST reinitialize", "POST failover", "POST switchover", "POST failsafe":
		return true
	}
	return false
}

// serveAPI answers the non-health endpoints; it reports false when the
// request is for a health check (or an unknown GET, which is one).
func (h *apiHandler) serveAPI(w http.ResponseWriter, r *http.Request, seg string) bool {
	n := h.node
	if n == nil {
		return false
	}
	if isUnsafe(r.Method, seg) && !h.allowed(w, r) {
		return true
	}
	switch r.Method + " " + seg {
	case "GET cluster":
		h.getCluster(w, r)
	case "GET history":
		h.getHistory(w, r)
	case "GET config":
		h.getConfig(w, r)
	case "PATCH config":
		h.patchConfig(w, r)
	case "PUT config":
		h.putConfig(w, r)
	case "POST switchover", "POST failover":
		h.postSwitchover(w, r, seg == "failover")
	case "DELETE switchover":
		h.deleteSwitchover(w, r)
	case "POST reload":
		if err := n.Reload(r.Context()); err != nil {
			text(w, http.StatusServiceUnavailable, "reload failed: "+err.Error())
			return true
		}
		text(w, http.StatusAccepted, "reload scheduled")
	case "POST restart":
		h.postRestart(w, r)
	case "DELETE restart":
		if n.CancelScheduledRestart() {
			text(w, http.StatusOK, "scheduled restart deleted")
		} else {
			text(w, http.StatusNotFound, "no restarts are scheduled")
		}
	case "POST reinitialize":
		h.postReinitialize(w, r)
	case "GET metrics":
		h.metrics(w, r)
	case "GET failsafe":
		h.getFailsafe(w)
	case "POST failsafe":
		h.postFailsafeHandler(w, r)
	default:
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
			return false
		}
		text(w, http.StatusNotImplemented, "Unsupported method")
	}
	return true
}

func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		text(w, http.StatusInternalServerError, "cannot encode the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// allowed applies Patroni's access checks in order: allowlist (403), client
// certificate (403), Basic auth (401).
func (h *apiHandler) allowed(w http.ResponseWriter, r *http.Request) bool {
	cfg := h.node.cfg.API
	if len(cfg.Allowlist) > 0 || cfg.AllowlistIncludeMembers {
		if !h.inAllowlist(r) {
			text(w, http.StatusForbidden, "Access is denied")
			return false
		}
	}
	if cfg.VerifyClient == "optional" || cfg.VerifyClient == "required" {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			text(w, http.StatusForbidden, "client certificate required")
			return false
		}
	}
	if cfg.Username != "" || cfg.Password != "" {
		user, pass, ok := r.BasicAuth()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="Patroni"`)
			text(w, http.StatusUnauthorized, "no auth header received")
			return false
		}
		if subtle.ConstantTimeCompare([]byte(user), []byte(cfg.Username)) != 1 ||
			subtle.ConstantTimeCompare([]byte(pass), []byte(cfg.Password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="Patroni"`)
			text(w, http.StatusUnauthorized, "not authenticated")
			return false
		}
	}
	return true
}

func (h *apiHandler) inAllowlist(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, a := range h.node.cfg.API.Allowlist {
		if _, nw, err := net.ParseCIDR(a); err == nil && nw.Contains(ip) {
			return true
		}
		if other := net.ParseIP(a); other != nil && other.Equal(ip) {
			return true
		}
		if addrs, err := net.LookupIP(a); err == nil {
			for _, x := range addrs {
				if x.Equal(ip) {
					return true
				}
			}
		}
	}
	if h.node.cfg.API.AllowlistIncludeMembers {
		if c := h.node.lastClusterSnapshot(); c != nil {
			for _, m := range c.Members {
				if u, err := urlHost(m.Data.APIURL); err == nil {
					if x := net.ParseIP(u); x != nil && x.Equal(ip) {
						return true
					}
				}
			}
		}
	}
	return false
}

func urlHost(raw string) (string, error) {
	h, _, err := connHostPort(strings.Replace(raw, "http", "postgres", 1))
	return h, err
}

// getCluster is GET /cluster: a fresh read of the DCS (SPEC 4.4).
func (h *apiHandler) getCluster(w http.ResponseWriter, r *http.Request) {
	c, err := h.node.store.Cluster(r.Context())
	if err != nil {
		text(w, http.StatusServiceUnavailable, "DCS is not accessible: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, ClusterJSON(c))
}

// ClusterJSON renders a snapshot as Patroni's GET /cluster body: members
// sorted by name with role (leader, replica), state, api_url, host, port,
// timeline and, for non-leaders, lag in bytes behind /status.optime.
func ClusterJSON(c *dcs.Cluster) map[string]any {
	members := make([]map[string]any, 0, len(c.Members))
	for _, m := range c.Members {
		e := map[string]any{"name": m.Name, "api_url": m.Data.APIURL, "state": m.Data.State}
		if host, port, err := connHostPort(m.Data.ConnURL); err == nil {
			e["host"], e["port"] = host, port
		}
		if m.Data.Timeline != 0 {
			e["timeline"] = m.Data.Timeline
		}
		if len(m.Data.Tags) > 0 {
			e["tags"] = m.Data.Tags
		}
		if m.Data.PendingRestart {
			e["pending_restart"] = true
		}
		if m.Name == c.LeaderName() {
			e["role"] = "leader"
		} else {
			e["role"] = dcs.RoleReplica
			if c.Sync != nil && c.Sync.IsStandby(m.Name) {
				e["role"] = "sync_standby"
			}
			if m.Data.ReplicationState != "" {
				e["state"] = m.Data.ReplicationState
			}
			if m.Data.XLogLocation != nil {
				e["lag"] = max(c.Status.Optime-*m.Data.XLogLocation, 0)
			} else {
				e["lag"] = "unknown"
			}
		}
		members = append(members, e)
	}
	out := map[string]any{"members": members}
	if c.Config != nil && c.Config.Dynamic().Pause {
		out["pause"] = true
	}
	if f := c.Failover; !f.IsEmpty() && !f.ScheduledAt.IsZero() {
		sw := map[string]any{"at": dcs.FormatTime(f.ScheduledAt)}
		if f.Leader != "" {
			sw["from"] = f.Leader
		}
		if f.Candidate != "" {
			sw["to"] = f.Candidate
		}
		out["scheduled_switchover"] = sw
	}
	return out
}

func (h *apiHandler) getHistory(w http.ResponseWriter, r *http.Request) {
	c, err := h.node.store.Cluster(r.Context())
	if err != nil {
		text(w, http.StatusServiceUnavailable, "DCS is not accessible: "+err.Error())
		return
	}
	var lines []dcs.HistoryLine
	if c.History != nil {
		lines = c.History.Lines
	}
	b, err := dcs.EncodeHistory(lines)
	if err != nil {
		text(w, http.StatusInternalServerError, err.Error())
		return
	}
	if len(lines) == 0 {
		b = []byte("[]")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func (h *apiHandler) getConfig(w http.ResponseWriter, r *http.Request) {
	c, err := h.node.store.Cluster(r.Context())
	if err != nil || c.Config == nil || len(c.Config.Data) == 0 {
		text(w, http.StatusBadGateway, "the dynamic configuration is missing or invalid")
		return
	}
	writeJSON(w, http.StatusOK, c.Config.Data)
}

// readJSONObject reads a JSON object body, answering 411/400 itself.
func readJSONObject(w http.ResponseWriter, r *http.Request, required bool) (map[string]any, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		text(w, http.StatusRequestEntityTooLarge, "request body too large or unreadable")
		return nil, false
	}
	body := strings.TrimSpace(string(b))
	if body == "" || body == "null" {
		if required {
			text(w, http.StatusBadRequest, "a JSON object is required")
			return nil, false
		}
		return map[string]any{}, true
	}
	obj, err := dcs.DecodeConfig([]byte(body))
	if err != nil {
		text(w, http.StatusBadRequest, "the body is not a JSON object: "+err.Error())
		return nil, false
	}
	return obj, true
}

// patchConfig deep-merges the body into /config (null deletes a key) and
// writes it with a CAS on the version read (409 on conflict).
func (h *apiHandler) patchConfig(w http.ResponseWriter, r *http.Request) {
	patch, ok := readJSONObject(w, r, true)
	if !ok {
		return
	}
	c, err := h.node.store.Cluster(r.Context())
	if err != nil || c.Config == nil {
		text(w, http.StatusServiceUnavailable, "the dynamic configuration is not in the DCS")
		return
	}
	merged := MergeConfig(c.Config.Data, patch)
	if !reflect.DeepEqual(merged, c.Config.Data) {
		if _, err := h.node.store.SetConfig(r.Context(), merged, dcs.IfRevision(c.Config.ModRevision)); err != nil {
			if errors.Is(err, dcs.ErrConflict) {
				text(w, http.StatusConflict, "Conflict")
				return
			}
			text(w, http.StatusServiceUnavailable, "failed to write the configuration: "+err.Error())
			return
		}
		h.node.poke(h.node.wake)
	}
	writeJSON(w, http.StatusOK, merged)
}

// MergeConfig applies a PATCH /config body to a configuration: nested
// objects are merged, null deletes a key, anything else replaces. Neither
// argument is modified.
func MergeConfig(base, patch map[string]any) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range patch {
		if v == nil {
			delete(out, k)
			continue
		}
		if pm, ok := v.(map[string]any); ok {
			if bm, ok := out[k].(map[string]any); ok {
				out[k] = MergeConfig(bm, pm)
				continue
			}
			out[k] = MergeConfig(map[string]any{}, pm)
			continue
		}
		out[k] = v
	}
	return out
}

func (h *apiHandler) putConfig(w http.ResponseWriter, r *http.Request) {
	cfg, ok := readJSONObject(w, r, true)
	if !ok {
		return
	}
	c, err := h.node.store.Cluster(r.Context())
	if err == nil && c.Config != nil && reflect.DeepEqual(c.Config.Data, cfg) {
		writeJSON(w, http.StatusOK, cfg)
		return
	}
	if _, err := h.node.store.SetConfig(r.Context(), cfg, dcs.Unconditional); err != nil {
		text(w, http.StatusBadGateway, "failed to write the configuration: "+err.Error())
		return
	}
	h.node.poke(h.node.wake)
	writeJSON(w, http.StatusOK, cfg)
}

// switchoverStatus maps a validation error to Patroni's status and text.
func switchoverStatus(err error) (int, string) {
	switch {
	case errors.Is(err, failover.ErrUnknownMember):
		return http.StatusPreconditionFailed, "candidate does not exists"
	case errors.Is(err, failover.ErrScheduledInPast):
		return http.StatusUnprocessableEntity, "Cannot schedule switchover in the past"
	case errors.Is(err, failover.ErrCandidateRequired):
		return http.StatusBadRequest, "Failover could be performed only to a specific candidate"
	case errors.Is(err, failover.ErrLeaderRequired):
		return http.StatusBadRequest, "Switchover could be performed only from a specific leader"
	case errors.Is(err, failover.ErrCannotSchedule), errors.Is(err, failover.ErrSameMember):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, failover.ErrLeaderMismatch):
		return http.StatusPreconditionFailed, "leader name does not match"
	}
	return http.StatusPreconditionFailed, err.Error()
}

// postSwitchover is POST /switchover and POST /failover (SPEC 4.7).
func (h *apiHandler) postSwitchover(w http.ResponseWriter, r *http.Request, isFailover bool) {
	body, ok := readJSONObject(w, r, false)
	if !ok {
		return
	}
	str := func(k string) (string, bool) {
		v, present := body[k]
		if !present || v == nil {
			return "", true
		}
		s, isStr := v.(string)
		return s, isStr
	}
	leader, ok1 := str("leader")
	cand, ok2 := str("candidate")
	if cand == "" {
		cand, ok2 = str("member")
	}
	sched, ok3 := str("scheduled_at")
	if !ok1 || !ok2 || !ok3 {
		text(w, http.StatusBadRequest, "leader, candidate and scheduled_at must be strings")
		return
	}
	req := failover.SwitchoverRequest{Leader: leader, Candidate: cand, Failover: isFailover}
	if sched != "" {
		t, err := dcs.ParseTime(sched)
		if err != nil {
			text(w, http.StatusUnprocessableEntity, "Unable to parse scheduled timestamp ("+err.Error()+")")
			return
		}
		if !hasZone(sched) {
			text(w, http.StatusBadRequest, "Timezone information is mandatory for the scheduled switchover")
			return
		}
		req.ScheduledAt = t
	}
	if isFailover && leader != "" {
		req.Failover = false // a failover naming the leader is a switchover
	}
	n := h.node
	c, err := n.store.Cluster(r.Context())
	if err != nil {
		text(w, http.StatusServiceUnavailable, "DCS is not accessible")
		return
	}
	if err := n.request(r.Context(), c, req); err != nil {
		if errors.Is(err, ErrInvalidRequest) {
			code, msg := switchoverStatus(err)
			text(w, code, msg)
			return
		}
		text(w, http.StatusServiceUnavailable, "failed to write failover key into DCS")
		return
	}
	if !req.ScheduledAt.IsZero() {
		text(w, http.StatusAccepted, "Switchover scheduled")
		return
	}
	verb := "switched over"
	if req.Failover {
		verb = "failed over"
	}
	old := c.LeaderName()
	wait := 2 * max(10*time.Second, n.dynamic().LoopWait)
	deadline := n.clock.Now().Add(wait)
	for n.clock.Now().Before(deadline) {
		n.sleep(r.Context(), 100*time.Millisecond)
		if r.Context().Err() != nil {
			return
		}
		nc, err := n.store.Cluster(r.Context())
		if err != nil {
			continue
		}
		if l := nc.LeaderName(); l != "" && l != old {
			if cand != "" && l != cand {
				text(w, http.StatusOK, fmt.Sprintf("%s to %q instead of %q", strings.ToUpper(verb[:1])+verb[1:], l, cand))
				return
			}
			text(w, http.StatusOK, fmt.Sprintf("Successfully %s to %q", verb, l))
			return
		}
		if nc.Failover.IsEmpty() && nc.LeaderName() == old && old != "" {
			text(w, http.StatusServiceUnavailable, "Switchover failed")
			return
		}
	}
	text(w, http.StatusServiceUnavailable, fmt.Sprintf("%s status unknown after %d seconds; operation may still be in progress",
		map[bool]string{true: "Failover", false: "Switchover"}[req.Failover], int(wait/time.Second)))
}

func hasZone(s string) bool {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "Z") {
		return true
	}
	if len(s) > 6 {
		tail := s[len(s)-6:]
		if (tail[0] == '+' || tail[0] == '-') && tail[3] == ':' {
			return true
		}
		tail = s[len(s)-5:]
		if tail[0] == '+' || tail[0] == '-' {
			return true
		}
	}
	return false
}

func (h *apiHandler) deleteSwitchover(w http.ResponseWriter, r *http.Request) {
	c, err := h.node.store.Cluster(r.Context())
	if err != nil {
		text(w, http.StatusServiceUnavailable, "DCS is not accessible")
		return
	}
	if c.Failover.IsEmpty() || c.Failover.ScheduledAt.IsZero() {
		text(w, http.StatusNotFound, "no switchover is scheduled")
		return
	}
	if _, err := h.node.store.SetFailover(r.Context(), dcs.Failover{}, dcs.IfRevision(c.Failover.ModRevision)); err != nil {
		text(w, http.StatusConflict, "Conflict")
		return
	}
	text(w, http.StatusOK, "scheduled switchover deleted")
}

// postRestart is POST /restart: an immediate restart of Postgres, with
// Patroni's conditions (role, postgres_version, restart_pending).
func (h *apiHandler) postRestart(w http.ResponseWriter, r *http.Request) {
	body, ok := readJSONObject(w, r, false)
	if !ok {
		return
	}
	for k := range body {
		switch k {
		case "role", "postgres_version", "restart_pending", "timeout", "schedule":
		default:
			text(w, http.StatusBadRequest, "Unknown filter for the scheduled restart: "+k)
			return
		}
	}
	if msg := restartFiltersInvalid(body); msg != "" {
		text(w, http.StatusBadRequest, msg)
		return
	}
	if v, ok := body["schedule"]; ok {
		h.scheduleRestart(w, v, body)
		return
	}
	st := h.node.liveStatus()
	if why := restartConditionsFail(st, body); why != "" {
		text(w, http.StatusServiceUnavailable, "restart conditions are not satisfied")
		return
	}
	if err := h.node.Restart(r.Context()); err != nil {
		text(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	text(w, http.StatusOK, "restarted successfully")
}

func parsePGVersion(s string) (int, error) {
	var major, minor int
	if _, err := fmt.Sscanf(s, "%d.%d", &major, &minor); err != nil {
		if _, err := fmt.Sscanf(s, "%d", &major); err != nil {
			return 0, err
		}
	}
	if major >= 10 {
		return major*10000 + minor, nil
	}
	return major*10000 + minor*100, nil
}

func (h *apiHandler) postReinitialize(w http.ResponseWriter, r *http.Request) {
	body, ok := readJSONObject(w, r, false)
	if !ok {
		return
	}
	force, _ := body["force"].(bool)
	if err := h.node.Reinitialize(r.Context(), force); err != nil {
		text(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	text(w, http.StatusOK, "reinitialize started")
}

// restartFiltersInvalid checks the shape of POST /restart's conditions.
func restartFiltersInvalid(body map[string]any) string {
	if role, ok := body["role"]; ok {
		switch role {
		case "primary", "master", "replica", "standby_leader":
		default:
			return "PostgreSQL role should be either primary, standby_leader, or replica"
		}
	}
	if rp, ok := body["restart_pending"]; ok {
		if _, isBool := rp.(bool); !isBool {
			return "restart_pending should be a boolean"
		}
	}
	if v, ok := body["postgres_version"]; ok {
		s, _ := v.(string)
		if _, err := parsePGVersion(s); err != nil {
			return "PostgreSQL version should be in the first.major.minor format"
		}
	}
	if v, ok := body["timeout"]; ok {
		f, isNum := v.(float64)
		if !isNum || f <= 0 {
			return "timeout should be a positive number of seconds"
		}
	}
	return ""
}

// restartConditionsFail says which condition of a restart request does
// not hold for st, "" when all hold (the filters were checked for shape).
func restartConditionsFail(st *Status, body map[string]any) string {
	if role, ok := body["role"].(string); ok {
		if role == "master" {
			role = "primary"
		}
		if st.Role != role {
			return "role is " + st.Role + ", not " + role
		}
	}
	if b, _ := body["restart_pending"].(bool); b && !st.PendingRestart {
		return "no restart is pending"
	}
	if v, ok := body["postgres_version"].(string); ok {
		if want, err := parsePGVersion(v); err == nil && st.ServerVersion >= want {
			return "the server is not older than " + v
		}
	}
	return ""
}

// scheduleRestart is POST /restart with a schedule.
func (h *apiHandler) scheduleRestart(w http.ResponseWriter, v any, body map[string]any) {
	s, _ := v.(string)
	at, err := dcs.ParseTime(s)
	if err != nil || s == "" {
		text(w, http.StatusBadRequest, "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601")
		return
	}
	if h.node.Status().Paused {
		text(w, http.StatusInternalServerError, "Can't schedule restart in the paused state")
		return
	}
	if at.Before(h.node.clock.Now()) {
		text(w, http.StatusUnprocessableEntity, "Cannot schedule restart in the past")
		return
	}
	filters := map[string]any{}
	for k, v := range body {
		if k != "schedule" {
			filters[k] = v
		}
	}
	if err := h.node.ScheduleRestart(at, filters); err != nil {
		text(w, http.StatusConflict, "Another restart is already scheduled")
		return
	}
	text(w, http.StatusAccepted, "Restart scheduled")
}
