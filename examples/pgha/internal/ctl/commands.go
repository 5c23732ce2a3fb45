package ctl

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/ha"
)

func checkFormat(f string) error {
	switch f {
	case "pretty", "tsv", "json", "yaml", "yml":
		return nil
	}
	return usage("unknown format %q: pretty, tsv, json or yaml", f)
}

func cmdList(c *cli, o *opts, pos []string) error     { return c.list(o, pos, false) }
func cmdTopology(c *cli, o *opts, pos []string) error { return c.list(o, pos, true) }

func (c *cli) list(o *opts, pos []string, topology bool) error {
	if err := checkFormat(o.format); err != nil {
		return err
	}
	scopes := pos
	if len(scopes) == 0 {
		s, _, err := c.scopeOf(nil, false)
		if err != nil {
			return err
		}
		scopes = []string{s}
	}
	interval := o.watch
	if o.watchDefault && interval == 0 {
		interval = 2
	}
	tty := isTerminal(c.io.Stdout)
	for {
		if interval > 0 && tty {
			fmt.Fprint(c.io.Stdout, "\033[H\033[2J")
		}
		for _, s := range scopes {
			if o.timestamp {
				c.out("%s", c.io.Now().Format("2006-01-02 15:04:05"))
			}
			cl, err := c.cluster(s)
			if err != nil {
				return err
			}
			format := o.format
			if topology && format == "pretty" {
				format = ""
			}
			RenderList(c.io.Stdout, cl, s, ListOptions{Extended: o.extended, Format: format, Topology: topology})
		}
		if interval <= 0 {
			return nil
		}
		select {
		case <-c.ctx.Done():
			return nil
		case <-time.After(time.Duration(interval * float64(time.Second))):
		}
	}
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// parseScheduled parses --scheduled: "now" or empty is zero; otherwise an
// ISO 8601 time, in the local zone when it has none.
func parseScheduled(s string) (time.Time, error) {
	if s == "" || s == "now" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999-0700", "2006-01-02 15:04:05Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usage("Unable to parse scheduled timestamp (%s). It should be in an unambiguous format (e.g. ISO 8601)", s)
}

func nofailover(m dcs.Member) bool { return m.Data.Tags.NoFailover() }

func cmdSwitchover(c *cli, o *opts, pos []string) error {
	return c.switchover(o, pos, "switchover")
}

func cmdFailover(c *cli, o *opts, pos []string) error {
	action := "failover"
	if o.leader != "" {
		action = "switchover" // as patronictl: a failover naming the leader is a switchover
	}
	return c.switchover(o, pos, action)
}

// switchover is patronictl's _do_failover_or_switchover.
func (c *cli) switchover(o *opts, pos []string, action string) error {
	scope, rest, err := c.scopeOf(pos, false)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usage("unexpected arguments: %s", strings.Join(rest, " "))
	}
	cl, err := c.existingCluster(scope)
	if err != nil {
		return err
	}
	leader := o.leader
	current := cl.LeaderName()
	if action == "switchover" && current == "" {
		return fail("This cluster has no leader")
	}
	if leader == "" {
		if o.force || action == "failover" {
			leader = current
		} else {
			leader = c.prompt("Primary", current)
		}
	}
	if leader != "" && current != "" && leader != current {
		return fail("Member %s is not the leader of cluster %s", leader, scope)
	}
	var candidates []string
	for _, m := range cl.Members {
		if m.Name != leader && !nofailover(m) {
			candidates = append(candidates, m.Name)
		}
	}
	slices.Sort(candidates)
	if len(candidates) == 0 {
		return fail("No candidates found to %s to", action)
	}
	cand := o.candidate
	if cand == "" && !o.force {
		cand = c.prompt("Candidate "+pyList(candidates), "")
	}
	if action == "failover" && cand == "" {
		return fail("Failover could be performed only to a specific candidate")
	}
	if cand != "" && cand == leader {
		return fail("%s target and source are the same.", title(action))
	}
	if cand != "" && !slices.Contains(candidates, cand) {
		if m, ok := cl.Member(cand); ok && nofailover(m) {
			return fail("Member %s is tagged nofailover and cannot be promoted", cand)
		}
		return fail("Member %s does not exist in cluster %s", cand, scope)
	}
	var at time.Time
	if action == "switchover" {
		sched := o.scheduled
		if sched == "" && !o.force {
			next := c.io.Now().Add(time.Hour).Format("2006-01-02T15:04")
			sched = c.prompt("When should the switchover take place (e.g. "+next+" ) ", "now")
		}
		if at, err = parseScheduled(sched); err != nil {
			return err
		}
		if !at.IsZero() && cl.Config.Dynamic().Pause {
			return fail("Can't schedule switchover in the paused state")
		}
	}
	c.out("Current cluster topology")
	RenderList(c.io.Stdout, cl, scope, ListOptions{})
	if !o.force {
		demote := ""
		if leader != "" {
			demote = ", demoting current leader " + leader
		}
		q := fmt.Sprintf("Are you sure you want to %s cluster %s%s?", action, scope, demote)
		if !at.IsZero() {
			q = fmt.Sprintf("Are you sure you want to schedule %s of cluster %s at %s%s?", action, scope, at.Format(time.RFC3339), demote)
		}
		if !c.confirm(q) {
			return fail("Aborting %s", action)
		}
	}
	// As patronictl 4: a failover names only the candidate (a failover
	// naming the leader is a switchover).
	body := map[string]any{}
	if action == "switchover" && leader != "" {
		body["leader"] = leader
	}
	if cand != "" {
		body["candidate"] = cand
	}
	if !at.IsZero() {
		body["scheduled_at"] = at.Format(time.RFC3339)
	}
	target, ok := cl.Member(current)
	if current == "" {
		target, ok = cl.Member(cand)
	}
	var code int
	var text string
	if ok {
		code, text, err = c.request(target, http.MethodPost, action, body)
	} else {
		err = fmt.Errorf("no member to ask")
	}
	if err != nil {
		c.out("%s Could not %s using the REST API (%v), falling back to DCS", c.timestamp(), action, err)
		s, serr := c.store(scope)
		if serr != nil {
			return serr
		}
		f := dcs.Failover{Candidate: cand, ScheduledAt: at}
		if action == "switchover" {
			f.Leader = leader
		}
		if _, werr := s.SetFailover(c.ctx, f, dcs.Unconditional); werr != nil {
			return dcsErr("failed to write the failover key into DCS: %v", werr)
		}
	} else if code == http.StatusOK || code == http.StatusAccepted {
		c.out("%s %s", c.timestamp(), text)
	} else {
		return fail("%s failed, details: %d, %s", title(action), code, text)
	}
	if cl, err = c.cluster(scope); err != nil {
		return err
	}
	RenderList(c.io.Stdout, cl, scope, ListOptions{})
	return nil
}

func title(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// pyList renders names as Python prints a list: ['a', 'b'].
func pyList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "'" + n + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// roleMembers lists the members with a role: leader/primary/master,
// replica, or any.
func roleMembers(cl *dcs.Cluster, role string) ([]string, error) {
	var out []string
	switch role {
	case "leader", "primary", "master", "standby-leader":
		if l := cl.LeaderName(); l != "" {
			out = append(out, l)
		}
	case "replica", "standby":
		for _, m := range cl.Members {
			if m.Name != cl.LeaderName() {
				out = append(out, m.Name)
			}
		}
	case "any", "":
		for _, m := range cl.Members {
			out = append(out, m.Name)
		}
	default:
		return nil, usage("unknown role %q: leader, primary, replica or any", role)
	}
	return out, nil
}

// selectMembers is patronictl's get_members: it prints the cluster, picks
// the members (by name, by role, or by asking) and confirms the action.
func (c *cli) selectMembers(cl *dcs.Cluster, scope string, names []string, role string, force bool, action string, ask bool) ([]dcs.Member, error) {
	if len(cl.Members) == 0 {
		return nil, fail("%s cluster doesn't have any members", scope)
	}
	RenderList(c.io.Stdout, cl, scope, ListOptions{})
	if role != "" {
		rn, err := roleMembers(cl, role)
		if err != nil {
			return nil, err
		}
		if len(names) > 0 {
			var both []string
			for _, n := range names {
				if slices.Contains(rn, n) {
					both = append(both, n)
				}
			}
			if len(both) == 0 {
				return nil, fail("No %s among provided members", role)
			}
			names = both
		} else {
			names = rn
		}
	}
	if len(names) == 0 && !force {
		var all []string
		for _, m := range cl.Members {
			all = append(all, m.Name)
		}
		if n := c.prompt(fmt.Sprintf("Which member do you want to %s [%s]?", action, strings.Join(all, ", ")), ""); n != "" {
			names = []string{n}
		}
	}
	if len(names) == 0 {
		return nil, usage("name the member(s) to %s", action)
	}
	var out []dcs.Member
	for _, n := range names {
		m, ok := cl.Member(n)
		if !ok {
			return nil, fail("%s is not a member of cluster", n)
		}
		out = append(out, m)
	}
	if ask && !force {
		if !c.confirm(fmt.Sprintf("Are you sure you want to %s members %s?", action, memberNames(out))) {
			return nil, fail("Aborted %s", action)
		}
	}
	return out, nil
}

func memberNames(ms []dcs.Member) string {
	n := make([]string, len(ms))
	for i, m := range ms {
		n[i] = m.Name
	}
	return strings.Join(n, ", ")
}

func cmdRestart(c *cli, o *opts, pos []string) error {
	scope, names, err := c.scopeOf(pos, true)
	if err != nil {
		return err
	}
	cl, err := c.existingCluster(scope)
	if err != nil {
		return err
	}
	members, err := c.selectMembers(cl, scope, names, o.role, o.force, "restart", false)
	if err != nil {
		return err
	}
	sched := o.scheduled
	if sched == "" && !o.force {
		next := c.io.Now().Add(time.Hour).Format("2006-01-02T15:04")
		sched = c.prompt("When should the restart take place (e.g. "+next+") ", "now")
	}
	at, err := parseScheduled(sched)
	if err != nil {
		return err
	}
	if !o.force {
		q := fmt.Sprintf("Are you sure you want to restart members %s?", memberNames(members))
		if !at.IsZero() {
			q = fmt.Sprintf("Are you sure you want to schedule restart of members %s at %s?", memberNames(members), at.Format(time.RFC3339))
		}
		if !c.confirm(q) {
			return fail("Aborted restart")
		}
	}
	if o.anyMember {
		members = []dcs.Member{members[rand.IntN(len(members))]}
	}
	version := o.pgVersion
	if version == "" && !o.force {
		version = c.prompt("Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) ", "")
	}
	body := map[string]any{}
	if o.pending {
		body["restart_pending"] = true
	}
	if version != "" {
		body["postgres_version"] = version
	}
	if !at.IsZero() {
		if cl.Config.Dynamic().Pause {
			return fail("Can't schedule restart in the paused state")
		}
		body["schedule"] = at.Format(time.RFC3339)
	}
	if o.timeout != "" {
		body["timeout"] = o.timeout
	}
	failed := 0
	for _, m := range members {
		code, text, err := c.request(m, http.MethodPost, "restart", body)
		switch {
		case err != nil:
			c.out("Failed: restart for member %s, %v", m.Name, err)
			failed++
		case code == http.StatusOK:
			c.out("Success: restart on member %s", m.Name)
		case code == http.StatusAccepted:
			c.out("Success: restart scheduled on member %s", m.Name)
		case code == http.StatusConflict:
			c.out("Failed: another restart is already scheduled on member %s", m.Name)
			failed++
		default:
			c.out("Failed: restart for member %s, status code=%d, (%s)", m.Name, code, text)
			failed++
		}
	}
	if failed > 0 {
		return &exitError{code: ExitFailed, msg: fmt.Sprintf("restart failed on %d of %d members", failed, len(members))}
	}
	return nil
}

func cmdReload(c *cli, o *opts, pos []string) error {
	scope, names, err := c.scopeOf(pos, true)
	if err != nil {
		return err
	}
	cl, err := c.existingCluster(scope)
	if err != nil {
		return err
	}
	members, err := c.selectMembers(cl, scope, names, o.role, o.force, "reload", true)
	if err != nil {
		return err
	}
	loopWait := int(cl.Config.Dynamic().LoopWait / time.Second)
	failed := 0
	for _, m := range members {
		code, text, err := c.request(m, http.MethodPost, "reload", nil)
		switch {
		case err != nil:
			c.out("Failed: reload for member %s, %v", m.Name, err)
			failed++
		case code == http.StatusOK:
			c.out("No changes to apply on member %s", m.Name)
		case code == http.StatusAccepted:
			c.out("Reload request received for member %s and will be processed within %d seconds", m.Name, loopWait)
		default:
			c.out("Failed: reload for member %s, status code=%d, (%s)", m.Name, code, text)
			failed++
		}
	}
	if failed > 0 {
		return &exitError{code: ExitFailed, msg: fmt.Sprintf("reload failed on %d of %d members", failed, len(members))}
	}
	return nil
}

func cmdReinit(c *cli, o *opts, pos []string) error {
	scope, names, err := c.scopeOf(pos, true)
	if err != nil {
		return err
	}
	cl, err := c.existingCluster(scope)
	if err != nil {
		return err
	}
	members, err := c.selectMembers(cl, scope, names, "", o.force, "reinitialize", true)
	if err != nil {
		return err
	}
	var waitOn []dcs.Member
	failed := 0
	for _, m := range members {
		body := map[string]any{"force": o.force}
		if o.fromLeader {
			body["from_leader"] = true
		}
		for {
			code, text, err := c.request(m, http.MethodPost, "reinitialize", body)
			started := err == nil && code < 400
			switch {
			case err != nil:
				c.out("Failed: reinitialize for member %s, %v", m.Name, err)
			case started:
				c.out("Success: reinitialize for member %s", m.Name)
			default:
				c.out("Failed: reinitialize for member %s, status code=%d, (%s)", m.Name, code, text)
			}
			if !started && err == nil && strings.HasSuffix(text, " already in progress") && !o.force &&
				c.confirm("Do you want to cancel it and reinitialize anyway?") {
				body["force"] = true
				continue
			}
			if started && o.wait {
				waitOn = append(waitOn, m)
			}
			if !started {
				failed++
			}
			break
		}
	}
	if len(waitOn) > 0 {
		c.out("Waiting for reinitialize to complete on: %s", memberNames(waitOn))
	}
	for len(waitOn) > 0 {
		select {
		case <-c.ctx.Done():
			return fail("interrupted")
		case <-time.After(2 * time.Second):
		}
		var still []dcs.Member
		for _, m := range waitOn {
			code, text, err := c.request(m, http.MethodGet, "patroni", nil)
			var st struct {
				State string `json:"state"`
			}
			if err == nil && code > 0 && json.Unmarshal([]byte(text), &st) == nil && st.State != "creating replica" && st.State != "" {
				c.out("Reinitialize is completed on: %s", m.Name)
				continue
			}
			still = append(still, m)
		}
		waitOn = still
	}
	if failed > 0 {
		return &exitError{code: ExitFailed, msg: fmt.Sprintf("reinitialize failed on %d of %d members", failed, len(members))}
	}
	return nil
}

func cmdPause(c *cli, o *opts, pos []string) error  { return c.togglePause(o, pos, true) }
func cmdResume(c *cli, o *opts, pos []string) error { return c.togglePause(o, pos, false) }

// togglePause is patronictl's toggle_pause: PATCH /config {"pause": true}
// (or null) on the first member that answers, leader first. When no member
// answers, pgha writes /config itself with a compare-and-swap.
func (c *cli) togglePause(o *opts, pos []string, paused bool) error {
	scope, rest, err := c.scopeOf(pos, false)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usage("unexpected arguments: %s", strings.Join(rest, " "))
	}
	cl, err := c.existingCluster(scope)
	if err != nil {
		return err
	}
	verb, done := "pause", "paused"
	if !paused {
		verb, done = "resume", "resumed"
	}
	if cl.Config.Dynamic().Pause == paused {
		if paused {
			return fail("Cluster is already paused")
		}
		return fail("Cluster is not paused")
	}
	var value any
	if paused {
		value = true
	}
	var order []dcs.Member
	if l, ok := cl.Member(cl.LeaderName()); ok && l.Data.APIURL != "" {
		order = append(order, l)
	}
	for _, m := range cl.Members {
		if m.Name != cl.LeaderName() && m.Data.APIURL != "" {
			order = append(order, m)
		}
	}
	applied := false
	for _, m := range order {
		code, text, err := c.request(m, http.MethodPatch, "config", map[string]any{"pause": value})
		if err != nil {
			fmt.Fprintf(c.io.Stderr, "Member %s is not accessible: %v\n", m.Name, err)
			continue
		}
		if code != http.StatusOK {
			return fail("%s cluster management status code=%d, (%s)", verb, code, text)
		}
		applied = true
		break
	}
	if !applied {
		s, err := c.store(scope)
		if err != nil {
			return err
		}
		if cl.Config == nil {
			return dcsErr("cluster %s has no /config", scope)
		}
		merged := ha.MergeConfig(cl.Config.Data, map[string]any{"pause": value})
		if _, err := s.SetConfig(c.ctx, merged, dcs.IfRevision(cl.Config.ModRevision)); err != nil {
			return fail("no member answered and the DCS write failed: %v", err)
		}
		fmt.Fprintf(c.io.Stderr, "No member answered: %s written to /config in the DCS (compare-and-swap)\n", verb)
	}
	if o.wait {
		c.out("'%s' request sent, waiting until it is recognized by all nodes", verb)
		lw := cl.Config.Dynamic().LoopWait + 5*time.Second
		deadline := c.io.Now().Add(lw)
		for {
			var remaining []string
			for _, m := range order {
				code, text, err := c.request(m, http.MethodGet, "patroni", nil)
				var st struct {
					Pause bool `json:"pause"`
				}
				if err != nil || code == 0 || json.Unmarshal([]byte(text), &st) != nil || st.Pause != paused {
					remaining = append(remaining, m.Name)
				}
			}
			if len(remaining) == 0 {
				break
			}
			if c.io.Now().After(deadline) {
				return fail("%s members didn't recognize the %s state after %d seconds", strings.Join(remaining, ", "), verb, int(lw/time.Second))
			}
			select {
			case <-c.ctx.Done():
				return fail("interrupted")
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	c.out("Success: cluster management is %s", done)
	return nil
}

func cmdHistory(c *cli, o *opts, pos []string) error {
	if err := checkFormat(o.format); err != nil {
		return err
	}
	scope, _, err := c.scopeOf(pos, false)
	if err != nil {
		return err
	}
	cl, err := c.cluster(scope)
	if err != nil {
		return err
	}
	RenderHistory(c.io.Stdout, cl, o.format)
	return nil
}

func cmdShowConfig(c *cli, _ *opts, pos []string) error {
	scope, _, err := c.scopeOf(pos, false)
	if err != nil {
		return err
	}
	cl, err := c.existingCluster(scope)
	if err != nil {
		return err
	}
	if cl.Config == nil {
		return dcsErr("cluster %s has no /config", scope)
	}
	c.out("%s", dumpYAML(cl.Config.Data))
	return nil
}

func cmdRemove(c *cli, o *opts, pos []string) error {
	if len(pos) != 1 {
		return usage("name the cluster to remove: pgha remove CLUSTER")
	}
	if err := checkFormat(o.format); err != nil {
		return err
	}
	scope := pos[0]
	cl, err := c.cluster(scope)
	if err != nil {
		return err
	}
	RenderList(c.io.Stdout, cl, scope, ListOptions{Format: o.format})
	if c.promptRequired("Please confirm the cluster name to remove") != scope {
		return fail("Cluster names specified do not match")
	}
	const aware = "Yes I am aware"
	if c.promptRequired(fmt.Sprintf("You are about to remove all information in DCS for %s, please type: %q", scope, aware)) != aware {
		return fail("You did not exactly type %q", aware)
	}
	if l := cl.LeaderName(); l != "" {
		if c.promptRequired("This cluster currently is healthy. Please specify the leader name to continue") != l {
			return fail("You did not specify the current leader of the cluster")
		}
	}
	s, err := c.store(scope)
	if err != nil {
		return err
	}
	if err := s.DeleteCluster(c.ctx); err != nil {
		return dcsErr("deleting the cluster's keys: %v", err)
	}
	c.out("Cluster %s removed from the DCS", scope)
	return nil
}

func cmdVersion(c *cli, _ *opts, pos []string) error {
	c.out("pgha version %s", ha.Version)
	if len(pos) == 0 {
		return nil
	}
	scope, names := pos[0], pos[1:]
	cl, err := c.existingCluster(scope)
	if err != nil {
		return err
	}
	c.out("")
	failed := 0
	for _, m := range cl.Members {
		if m.Data.APIURL == "" || (len(names) > 0 && !slices.Contains(names, m.Name)) {
			continue
		}
		code, text, err := c.request(m, http.MethodGet, "patroni", nil)
		var st struct {
			Patroni struct {
				Version string `json:"version"`
			} `json:"patroni"`
			ServerVersion int `json:"server_version"`
		}
		if err == nil && code == 0 {
			err = fmt.Errorf("no answer")
		}
		if err == nil {
			err = json.Unmarshal([]byte(text), &st)
		}
		if err != nil {
			c.out("%s: failed to get version: %v", m.Name, err)
			failed++
			continue
		}
		pgv := ""
		if st.ServerVersion > 0 {
			pgv = " PostgreSQL " + formatPGVersion(st.ServerVersion)
		}
		c.out("%s: pgha %s%s", m.Name, st.Patroni.Version, pgv)
	}
	if failed > 0 {
		return fail("%d members did not answer", failed)
	}
	return nil
}

func formatPGVersion(v int) string {
	if v < 100000 {
		return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
	}
	return fmt.Sprintf("%d.%d", v/10000, v%100)
}
