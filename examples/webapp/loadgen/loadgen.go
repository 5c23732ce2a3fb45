package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Config configures a run. Zero values mean the documented default.
type Config struct {
	// URL is the webapp's base URL (required), e.g. "http://127.0.0.1:8080".
	URL string
	// Workers is the number of concurrent clients, each with its own
	// cookies. Default 4.
	Workers int
	// Duration bounds the run; 0 runs until ctx ends or Pairs is reached.
	Duration time.Duration
	// Pairs stops the run after this many write-then-read pairs in all; 0
	// means no limit.
	Pairs int
	// Timeout bounds each request. Default 30s.
	Timeout time.Duration
	// Progress, when not nil, receives a progress line every
	// ProgressInterval.
	Progress io.Writer
	// ProgressInterval is the time between progress lines. Default 1s.
	ProgressInterval time.Duration
	// Transport is the HTTP transport (default: a fresh one per run).
	Transport http.RoundTripper
}

// Stats are one operation's counts and latencies.
type Stats struct {
	// OK and Failed count the requests.
	OK, Failed int
	// Latencies are the successful requests' latencies, sorted.
	Latencies []time.Duration
	// Slowest is the slowest successful request's latency and SlowestAt
	// when it started, measured from the start of the run.
	Slowest, SlowestAt time.Duration
}

// Percentile returns the p-th percentile (0 < p <= 100) of the successful
// requests' latencies (nearest rank), 0 when there were none.
func (s Stats) Percentile(p float64) time.Duration {
	if len(s.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(s.Latencies))*p/100+0.5) - 1
	return s.Latencies[min(max(i, 0), len(s.Latencies)-1)]
}

// Count is a name and how many times it was seen.
type Count struct {
	Name string // what was counted
	N    int    // how many times
}

// Report is what a run measured.
type Report struct {
	// URL is the webapp the run loaded.
	URL string
	// Workers is the number of concurrent clients.
	Workers int
	// Elapsed is how long the run took, from the first request to the end
	// of the last.
	Elapsed time.Duration
	// Writes and Reads are per operation.
	Writes, Reads Stats
	// Failures counts failed requests by reason.
	Failures map[string]int
	// WritesBy counts successful writes by the member that served them (the
	// Pgha-Node header), in the order each was first seen.
	WritesBy []Count
}

// Failed is the number of failed requests.
func (r *Report) Failed() int { return r.Writes.Failed + r.Reads.Failed }

// OK is the number of successful requests.
func (r *Report) OK() int { return r.Writes.OK + r.Reads.OK }

// String renders the report as the load command prints it.
func (r *Report) String() string {
	var b strings.Builder
	secs := r.Elapsed.Seconds()
	fmt.Fprintf(&b, "load: %d workers for %.1fs against %s\n", r.Workers, secs, r.URL)
	rate := 0.0
	if secs > 0 {
		rate = float64(r.OK()) / secs
	}
	fmt.Fprintf(&b, "requests: %d ok, %d failed (writes %d ok %d failed, reads %d ok %d failed; %.0f ok/s)\n",
		r.OK(), r.Failed(), r.Writes.OK, r.Writes.Failed, r.Reads.OK, r.Reads.Failed, rate)
	var by []string
	for _, c := range r.WritesBy {
		by = append(by, fmt.Sprintf("%s %d", c.Name, c.N))
	}
	fmt.Fprintf(&b, "writes by primary: %s\n", strings.Join(by, ", "))
	fmt.Fprintf(&b, "latency %9s %9s %9s %9s %9s\n", "p50", "p90", "p99", "p99.9", "max")
	for _, op := range []struct {
		name string
		s    Stats
	}{{"write", r.Writes}, {"read", r.Reads}} {
		fmt.Fprintf(&b, "  %-5s %9s %9s %9s %9s %9s\n", op.name, round(op.s.Percentile(50)), round(op.s.Percentile(90)),
			round(op.s.Percentile(99)), round(op.s.Percentile(99.9)), round(op.s.Slowest))
	}
	if r.Writes.OK > 0 {
		fmt.Fprintf(&b, "slowest write: %s, started %.1fs into the run\n", round(r.Writes.Slowest), r.Writes.SlowestAt.Seconds())
	}
	if len(r.Failures) > 0 {
		reasons := make([]string, 0, len(r.Failures))
		for k := range r.Failures {
			reasons = append(reasons, k)
		}
		sort.Strings(reasons)
		b.WriteString("failures:\n")
		for _, k := range reasons {
			fmt.Fprintf(&b, "  %6d  %s\n", r.Failures[k], k)
		}
	}
	return b.String()
}

// round shortens a duration for display.
func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	default:
		return d.Round(10 * time.Microsecond).String()
	}
}

// sample is one finished request.
type sample struct {
	write   bool
	err     string // "" on success
	latency time.Duration
	start   time.Duration
	node    string
}

// Run runs the load until ctx ends, Duration passes or Pairs pairs are
// done, and returns the report. It fails only on a bad Config.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.URL == "" {
		return nil, errors.New("loadgen: Config.URL is required")
	}
	cfg.URL = strings.TrimRight(cfg.URL, "/")
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.Workers < 0 || cfg.Duration < 0 || cfg.Pairs < 0 || cfg.Timeout < 0 {
		return nil, errors.New("loadgen: Workers, Duration, Pairs and Timeout must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = time.Second
	}
	transport := cfg.Transport
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = cfg.Workers
		defer t.CloseIdleConnections()
		transport = t
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}

	start := time.Now()
	var mu sync.Mutex
	rep := &Report{URL: cfg.URL, Workers: cfg.Workers, Failures: map[string]int{}}
	var writeLat, readLat []time.Duration
	pairs := 0
	record := func(s sample) {
		mu.Lock()
		defer mu.Unlock()
		st := &rep.Reads
		lat := &readLat
		if s.write {
			st, lat = &rep.Writes, &writeLat
		}
		if s.err != "" {
			st.Failed++
			rep.Failures[s.err]++
			return
		}
		st.OK++
		*lat = append(*lat, s.latency)
		if s.latency > st.Slowest {
			st.Slowest, st.SlowestAt = s.latency, s.start
		}
		if s.write {
			i := slices.IndexFunc(rep.WritesBy, func(c Count) bool { return c.Name == s.node })
			if i < 0 {
				rep.WritesBy = append(rep.WritesBy, Count{Name: s.node})
				i = len(rep.WritesBy) - 1
			}
			rep.WritesBy[i].N++
		}
	}
	// claim takes the next pair, or reports that the run is over.
	claim := func() bool {
		if ctx.Err() != nil {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if cfg.Pairs > 0 && pairs >= cfg.Pairs {
			return false
		}
		pairs++
		return true
	}

	var wg sync.WaitGroup
	for w := range cfg.Workers {
		jar, _ := cookiejar.New(nil) // never fails without options
		c := &client{base: cfg.URL, http: &http.Client{Transport: transport, Jar: jar, Timeout: cfg.Timeout}, start: start}
		wg.Go(func() {
			for i := 0; claim(); i++ {
				key := fmt.Sprintf("load-%d-%d-%d", start.UnixNano(), w, i)
				text := fmt.Sprintf("note %d from worker %d", i, w)
				id, s := c.write(key, text)
				record(s)
				if s.err != "" {
					continue
				}
				record(c.read(id, text))
			}
		})
	}

	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if cfg.Progress == nil {
			return
		}
		t := time.NewTicker(cfg.ProgressInterval)
		defer t.Stop()
		lastOK := 0
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
			}
			mu.Lock()
			ok, failed := rep.OK(), rep.Failed()
			primary := ""
			if n := len(rep.WritesBy); n > 0 {
				primary = rep.WritesBy[n-1].Name
			}
			mu.Unlock()
			fmt.Fprintf(cfg.Progress, "%6.1fs  ok %7d (+%d)  failed %d  newest primary %s\n",
				time.Since(start).Seconds(), ok, ok-lastOK, failed, primary)
			lastOK = ok
		}
	}()
	wg.Wait()
	close(stopProgress)
	<-progressDone

	rep.Elapsed = time.Since(start)
	slices.Sort(writeLat)
	slices.Sort(readLat)
	rep.Writes.Latencies, rep.Reads.Latencies = writeLat, readLat
	return rep, nil
}

// client is one worker's HTTP client, with its own cookie jar: the
// read-your-writes cookie a write sets travels with its next read.
type client struct {
	base  string
	http  *http.Client
	start time.Time
}

func (c *client) write(key, text string) (int64, sample) {
	body, _ := json.Marshal(map[string]string{"text": text})
	req, err := http.NewRequest(http.MethodPost, c.base+"/notes", bytes.NewReader(body))
	if err != nil {
		return 0, sample{write: true, err: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	var note struct {
		ID   int64  `json:"id"`
		Text string `json:"text"`
	}
	s := c.do(req, http.StatusCreated, &note)
	s.write = true
	if s.err == "" && note.Text != text {
		s.err = "write: the answer carries another note's text"
	}
	return note.ID, s
}

func (c *client) read(id int64, text string) sample {
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/notes/%d", c.base, id), nil)
	if err != nil {
		return sample{err: err.Error()}
	}
	var note struct {
		Text string `json:"text"`
	}
	s := c.do(req, http.StatusOK, &note)
	if s.err == "" && note.Text != text {
		s.err = "read: not the note just written"
	}
	return s
}

// do runs one request and decodes a JSON answer with the wanted status.
func (c *client) do(req *http.Request, want int, out any) sample {
	begin := time.Now()
	s := sample{start: begin.Sub(c.start)}
	op := "write"
	if req.Method == http.MethodGet {
		op = "read"
	}
	resp, err := c.http.Do(req)
	if err != nil {
		s.err = op + ": " + classify(err)
		return s
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	s.latency = time.Since(begin)
	s.node = resp.Header.Get("Pgha-Node")
	if err != nil {
		s.err = op + ": reading the answer: " + classify(err)
		return s
	}
	if resp.StatusCode != want {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		if resp.StatusCode == http.StatusNotFound && op == "read" {
			s.err = "read: 404: the note just written is not there (read-your-writes violated)"
		} else {
			s.err = fmt.Sprintf("%s: %d %s", op, resp.StatusCode, firstLine(e.Error))
		}
		return s
	}
	if err := json.Unmarshal(b, out); err != nil {
		s.err = op + ": bad JSON answer: " + err.Error()
	}
	return s
}

// classify shortens transport errors to their kind, so that failures group.
func classify(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "connection reset"):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	return err.Error()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// Main is the load command: it parses args, runs the load and prints the
// report to stdout (progress lines too, unless -quiet). It returns 0 when
// every request succeeded, 1 when some failed or none ran, 2 on a bad
// command line.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	quiet := false
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "the webapp's base URL")
	fs.IntVar(&cfg.Workers, "workers", 4, "concurrent clients")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long to run (0: until Ctrl-C)")
	fs.IntVar(&cfg.Pairs, "pairs", 0, "stop after this many write+read pairs (0: no limit)")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "bound on each request")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "load: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if !quiet {
		cfg.Progress = stdout
	}
	rep, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	fmt.Fprint(stdout, rep.String())
	if rep.Failed() > 0 || rep.OK() == 0 {
		return 1
	}
	return 0
}
