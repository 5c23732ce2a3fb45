package dcs

import (
	"fmt"
	"slices"
	"strings"
)

// BuildCluster decodes the raw keys of one cluster prefix into a snapshot.
// Keys are relative to the prefix; unknown keys are ignored, as are keys more
// than one level below members/. Bad values never fail the build: each is
// reported in DecodeErrors and replaced by the documented default.
func BuildCluster(kvs []KeyValue, revision int64) *Cluster {
	c := &Cluster{Revision: revision}
	var leaderKV, optimeKV *KeyValue
	statusSeen := false
	fail := func(key string, err error) {
		c.DecodeErrors = append(c.DecodeErrors, fmt.Errorf("key %q: %w", key, err))
	}
	for i := range kvs {
		kv := &kvs[i]
		switch {
		case kv.Key == KeyLeader:
			leaderKV = kv
		case kv.Key == KeyConfig:
			data, err := DecodeConfig(kv.Value)
			if err != nil {
				fail(kv.Key, err)
			}
			c.Config = &Config{Data: data, ModRevision: kv.ModRevision}
		case kv.Key == KeyInitialize:
			sysid, err := DecodeInitialize(kv.Value)
			if err != nil {
				fail(kv.Key, err)
			}
			c.Initialize = &Initialize{SysID: sysid, ModRevision: kv.ModRevision}
		case kv.Key == KeyFailover:
			f, err := DecodeFailover(kv.Value)
			if err != nil {
				fail(kv.Key, err)
			}
			f.ModRevision = kv.ModRevision
			c.Failover = &f
		case kv.Key == KeySync:
			s, err := DecodeSync(kv.Value)
			if err != nil {
				fail(kv.Key, err)
			}
			s.ModRevision = kv.ModRevision
			c.Sync = &s
		case kv.Key == KeyHistory:
			h, err := DecodeHistory(kv.Value)
			if err != nil {
				fail(kv.Key, err)
			}
			h.ModRevision = kv.ModRevision
			c.History = &h
		case kv.Key == KeyStatus:
			statusSeen = true
			s, err := DecodeStatus(kv.Value)
			if err != nil {
				fail(kv.Key, err)
			}
			s.ModRevision = kv.ModRevision
			c.Status = s
		case kv.Key == KeyOptimeLeader:
			optimeKV = kv
		case kv.Key == KeyFailsafe:
			m, err := DecodeFailsafe(kv.Value)
			if err != nil {
				fail(kv.Key, err)
			}
			c.Failsafe = &Failsafe{Members: m, ModRevision: kv.ModRevision}
		case strings.HasPrefix(kv.Key, KeyMembers):
			name := strings.TrimPrefix(kv.Key, KeyMembers)
			if name == "" || strings.Contains(name, "/") {
				continue
			}
			d, err := DecodeMember(kv.Value)
			if err != nil {
				fail(kv.Key, err)
			}
			c.Members = append(c.Members, Member{Name: name, ModRevision: kv.ModRevision, Lease: kv.Lease, Data: d})
		}
	}
	if !statusSeen && optimeKV != nil {
		if n, ok := parseInt(strings.TrimSpace(string(optimeKV.Value))); ok {
			c.Status = Status{Optime: n, ModRevision: optimeKV.ModRevision}
		} else {
			fail(optimeKV.Key, fmt.Errorf("%w: optime/leader: not an integer", ErrInvalidValue))
		}
	}
	slices.SortFunc(c.Members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	if leaderKV != nil {
		name := strings.TrimSpace(string(leaderKV.Value))
		if name != "" {
			l := &Leader{Name: name, ModRevision: leaderKV.ModRevision, CreateRevision: leaderKV.CreateRevision, Lease: leaderKV.Lease}
			if m, ok := c.Member(name); ok {
				l.Member = m
			} else {
				l.Member = Member{Name: name}
			}
			c.Leader = l
		}
	}
	return c
}
