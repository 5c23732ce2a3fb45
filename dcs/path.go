package dcs

import (
	"fmt"
	"strings"
)

// DefaultNamespace is Patroni's default namespace: keys live under
// /service/<scope>/.
const DefaultNamespace = "service"

// Relative key names under a cluster's base path, exactly as Patroni writes them.
const (
	KeyLeader       = "leader"
	KeyMembers      = "members/"
	KeyConfig       = "config"
	KeyInitialize   = "initialize"
	KeyFailover     = "failover"
	KeySync         = "sync"
	KeyHistory      = "history"
	KeyStatus       = "status"
	KeyOptimeLeader = "optime/leader"
	KeyFailsafe     = "failsafe"
)

// Path locates one cluster in the store.
type Path struct {
	// Namespace is the top-level prefix, with or without slashes. Empty means
	// DefaultNamespace.
	Namespace string
	// Scope is the cluster name. Required.
	Scope string
}

// Validate reports whether the path names a cluster.
func (p Path) Validate() error {
	if strings.Trim(p.Scope, "/") == "" {
		return fmt.Errorf("dcs: scope is required")
	}
	if strings.ContainsAny(p.Scope, "\x00") || strings.ContainsAny(p.Namespace, "\x00") {
		return fmt.Errorf("dcs: scope and namespace must not contain NUL")
	}
	return nil
}

// Base returns the cluster's base path, "/<namespace>/<scope>", with runs of
// slashes collapsed and no trailing slash.
func (p Path) Base() string {
	ns := p.Namespace
	if strings.Trim(ns, "/") == "" {
		ns = DefaultNamespace
	}
	return collapse("/" + ns + "/" + p.Scope)
}

// Prefix returns the prefix that holds every key of the cluster: Base() + "/".
func (p Path) Prefix() string { return p.Base() + "/" }

// Key returns the absolute key for a relative one, e.g. Key("leader").
func (p Path) Key(rel string) string { return p.Prefix() + rel }

// MemberKey returns the absolute key of a member.
func (p Path) MemberKey(name string) string { return p.Prefix() + KeyMembers + name }

// Relative strips the cluster prefix from an absolute key. ok is false when the
// key is not under the prefix.
func (p Path) Relative(abs string) (rel string, ok bool) {
	return strings.CutPrefix(abs, p.Prefix())
}

func collapse(s string) string {
	var b strings.Builder
	prevSlash := false
	for _, r := range s {
		if r == '/' {
			if prevSlash {
				continue
			}
			prevSlash = true
		} else {
			prevSlash = false
		}
		b.WriteRune(r)
	}
	return strings.TrimRight(b.String(), "/")
}
