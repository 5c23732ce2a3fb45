package ha

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
)

func TestSplitCommandIsShellStyle(t *testing.T) {
	for in, want := range map[string][]string{
		"":                               nil,
		"   ":                            nil,
		"/bin/cb":                        {"/bin/cb"},
		"  /bin/cb  --x  y ":             {"/bin/cb", "--x", "y"},
		`/bin/cb 'a b' "c d"`:            {"/bin/cb", "a b", "c d"},
		`/bin/cb 'it'"'"'s'`:             {"/bin/cb", "it's"},
		`/bin/cb "say \"hi\" \$HOME \x"`: {"/bin/cb", `say "hi" $HOME \x`},
		`/bin/cb a\ b \'c`:               {"/bin/cb", "a b", "'c"},
		`/bin/cb ''`:                     {"/bin/cb", ""},
		"/bin/cb\ttab\nnl":               {"/bin/cb", "tab", "nl"},
	} {
		got, err := SplitCommand(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{`/bin/cb 'open`, `/bin/cb "open`, `/bin/cb \`} {
		_, err := SplitCommand(bad)
		require.Error(t, err, bad)
	}
}

func TestCallbacksValidate(t *testing.T) {
	errs := Callbacks{OnStart: "/bin/cb 'x", PrePromote: `"`, Timeout: -1}.validate()
	require.Len(t, errs, 3)
	require.Contains(t, errs[0].Error(), "on_start")
	require.Contains(t, errs[1].Error(), "pre_promote")
	require.Empty(t, Callbacks{OnStart: "/bin/true", BeforeStop: "/bin/true x"}.validate())
}

// writeScript writes a shell script into dir and returns its path.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755))
	return p
}

func waitFile(t *testing.T, path string, cond func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if cond(string(b)) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: condition not met; content %q", path, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lines(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Event callbacks get "<action> <role> <scope>" after their own arguments;
// a new one kills the previous one of its slot, with its children, and
// on_reload has a slot of its own.
func TestScriptsFireAndKillThePrevious(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	// Records its arguments, then, for on_start, sleeps in a child
	// process that records it was not killed.
	cb := writeScript(t, dir, "cb", `echo "$*" >> `+out+`
if [ "$2" = on_start ] || [ "$2" = on_reload ]; then
  (sleep 30; echo "survived $2" >> `+out+`) &
  wait
fi`)
	s := newScripts(Callbacks{OnStart: cb + " 'first arg'", OnStop: cb + " x", OnReload: cb + " r", OnRoleChange: cb + " y"},
		"shop", hclog.NewNullLogger())
	s.fire(ActionOnReload, "replica")
	s.fire(ActionOnStart, "replica")
	waitFile(t, out, func(c string) bool { return strings.Contains(c, "on_start") && strings.Contains(c, "on_reload") })
	s.mu.Lock()
	start, reload := s.slots[0], s.slots[1]
	s.mu.Unlock()
	s.fire(ActionOnStop, "primary") // kills on_start (and its sleeping child), not on_reload
	<-start.done
	select {
	case <-reload.done:
		t.Fatal("on_stop killed on_reload, which has its own slot")
	default:
	}
	waitFile(t, out, func(c string) bool { return strings.Contains(c, "on_stop") })
	s.fire(ActionOnReload, "primary") // kills the previous on_reload
	<-reload.done
	waitFile(t, out, func(c string) bool { return strings.Contains(c, "on_reload primary") })
	s.fire(ActionOnRoleChange, "primary")
	waitFile(t, out, func(c string) bool { return strings.Contains(c, "on_role_change") })
	s.fire(ActionOnStart, "uninitialized")
	waitFile(t, out, func(c string) bool { return strings.Contains(c, "on_start uninitialized") })
	expired := make(chan time.Time)
	close(expired)
	s.close(expired) // kills what still runs: the last on_start and on_reload
	got := lines(waitFile(t, out, func(c string) bool { return len(lines(c)) >= 6 }))
	require.ElementsMatch(t, []string{
		"r on_reload replica shop", "first arg on_start replica shop", "x on_stop primary shop",
		"r on_reload primary shop", "y on_role_change primary shop", "first arg on_start uninitialized shop",
	}, got)
	require.NotContains(t, strings.Join(got, "\n"), "survived", "children are killed with their callback")
}

func TestScriptsWithoutCommandDoNothing(t *testing.T) {
	s := newScripts(Callbacks{}, "shop", hclog.NewNullLogger())
	s.fire(ActionOnStart, "replica")
	require.Nil(t, s.slots[0])
	require.NoError(t, s.run(context.Background(), "pre_promote", "", time.Second))
}

// Synchronous scripts: exit 0 passes, a non-zero exit fails with the
// output, a script that does not finish in time is killed (with its
// children) and fails.
func TestScriptsRunSynchronously(t *testing.T) {
	dir := t.TempDir()
	s := newScripts(Callbacks{}, "shop", hclog.NewNullLogger())
	ok := writeScript(t, dir, "ok", "exit 0")
	require.NoError(t, s.run(context.Background(), "pre_promote", ok, 10*time.Second))
	fail := writeScript(t, dir, "fail", "echo not now >&2; exit 3")
	err := s.run(context.Background(), "pre_promote", fail, 10*time.Second)
	require.ErrorContains(t, err, "exit status 3")
	require.ErrorContains(t, err, "not now")
	marker := filepath.Join(dir, "marker")
	slow := writeScript(t, dir, "slow", "(sleep 1; touch "+marker+") & sleep 30")
	start := time.Now()
	err = s.run(context.Background(), "pre_promote", slow, 300*time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 10*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, s.run(ctx, "before_stop", slow, time.Minute), context.Canceled)
	time.Sleep(2 * time.Second) // the child would have touched the marker after 1s
	_, serr := os.Stat(marker)
	require.True(t, os.IsNotExist(serr), "the script's child was killed with it")
	require.ErrorContains(t, s.run(context.Background(), "pre_promote", filepath.Join(dir, "missing"), time.Second), "no such file")
}
