package config

import (
	"fmt"
	"strings"
)

// Severity says whether a Problem stops the node from starting.
type Severity int

const (
	// Warning: the node starts; the key is ignored, adjusted or only partly
	// honoured, and the message says how.
	Warning Severity = iota
	// Error: the configuration cannot be used as it is.
	Error
)

func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// Problem is one finding about the configuration, tied to a key path.
type Problem struct {
	Severity Severity
	// Key is the dotted key path, for example "restapi.listen" or
	// "postgresql.authentication.replication.username". "" for the file as a
	// whole.
	Key string
	// Source is where the value came from: "patroni.yml:12" or
	// "environment PATRONI_RESTAPI_LISTEN"; "" when unknown (a key that is
	// missing).
	Source string
	// Msg says what is wrong and what pgha does about it.
	Msg string
}

// String formats the problem on one line: "source: key: message".
func (p Problem) String() string {
	var b strings.Builder
	if p.Source != "" {
		b.WriteString(p.Source)
		b.WriteString(": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// InvalidError is what Load returns when the configuration has errors. It
// lists every problem found, errors and warnings, in file order.
type InvalidError struct {
	Problems []Problem
}

func (e *InvalidError) Error() string {
	var lines []string
	n := 0
	for _, p := range e.Problems {
		if p.Severity == Error {
			n++
			lines = append(lines, p.String())
		}
	}
	return fmt.Sprintf("invalid configuration (%d problems):\n  %s", n, strings.Join(lines, "\n  "))
}

// Errors returns only the problems of severity Error.
func (e *InvalidError) Errors() []Problem {
	var out []Problem
	for _, p := range e.Problems {
		if p.Severity == Error {
			out = append(out, p)
		}
	}
	return out
}
