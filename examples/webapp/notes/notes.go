package notes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/routing"
)

// Header and cookie names of the service's protocol.
const (
	// HeaderLSN carries a write's read-your-writes token (the commit's WAL
	// position, "16/B374D848"), in answers and in requests.
	HeaderLSN = "Pgha-LSN"
	// CookieLSN carries the same token for browsers.
	CookieLSN = "pgha_lsn"
	// HeaderNode names the member that served the request.
	HeaderNode = "Pgha-Node"
	// HeaderIdempotencyKey makes a POST /notes safe to retry after an
	// ambiguous commit.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// Note is one stored note.
type Note struct {
	ID        int64     `json:"id"`         // assigned by the database
	Text      string    `json:"text"`       // what the client wrote
	CreatedAt time.Time `json:"created_at"` // the primary's clock at the insert
}

// Config configures a Service. Zero values mean the documented default.
type Config struct {
	// Router is the cluster (required).
	Router *routing.Router
	// Timeout bounds each request's work, waits for a primary included.
	// Default 10s.
	Timeout time.Duration
	// MaxText bounds a note's length in bytes. Default 10000.
	MaxText int
	// Logger receives the service's logs. nil discards them.
	Logger *slog.Logger
}

// Service is the notes API. Create it with New.
type Service struct {
	cfg      Config
	stopping atomic.Bool
}

// New returns the service. It starts nothing.
func New(cfg Config) (*Service, error) {
	if cfg.Router == nil {
		return nil, errors.New("notes: Config.Router is required")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxText == 0 {
		cfg.MaxText = 10000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg}, nil
}

// Migrate creates the schema on the primary if it is not there.
func (s *Service) Migrate(ctx context.Context) error {
	_, err := s.cfg.Router.Write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS notes (
			id bigserial PRIMARY KEY,
			idempotency_key text UNIQUE,
			text text NOT NULL,
			created_at timestamptz NOT NULL DEFAULT now())`)
		return err
	})
	if err != nil {
		return fmt.Errorf("notes: creating the schema: %w", err)
	}
	return nil
}

// Shutdown marks the service as going away: /readyz answers 503 from now
// on. Requests are still served; the HTTP server's own Shutdown drains
// them.
func (s *Service) Shutdown() { s.stopping.Store(true) }

// Handler returns the HTTP API.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /notes", s.create)
	mux.HandleFunc("GET /notes/{id}", s.get)
	mux.HandleFunc("GET /notes", s.list)
	mux.HandleFunc("GET /topology", s.topology)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.ready)
	return mux
}

func (s *Service) ready(w http.ResponseWriter, _ *http.Request) {
	switch {
	case s.stopping.Load():
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
	case s.cfg.Router.Stats().Epoch.Leader == "":
		http.Error(w, "no primary", http.StatusServiceUnavailable)
	default:
		_, _ = w.Write([]byte("ok\n"))
	}
}

func (s *Service) create(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Text string `json:"text"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxText)+1024))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	if in.Text == "" || len(in.Text) > s.cfg.MaxText {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("text must be 1 to %d bytes", s.cfg.MaxText))
		return
	}
	var key *string
	if k := r.Header.Get(HeaderIdempotencyKey); k != "" {
		key = &k
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()

	var n Note
	var server string
	insert := func(tx pgx.Tx) error {
		server = serverOf(tx)
		n = Note{Text: in.Text}
		err := tx.QueryRow(ctx, `INSERT INTO notes (idempotency_key, text) VALUES ($1, $2)
			ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, created_at`, key, in.Text).Scan(&n.ID, &n.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) && key != nil {
			// Stored by an earlier attempt whose COMMIT outcome we did not learn.
			return tx.QueryRow(ctx, `SELECT id, text, created_at FROM notes WHERE idempotency_key = $1`, *key).
				Scan(&n.ID, &n.Text, &n.CreatedAt)
		}
		return err
	}
	lsn, err := s.cfg.Router.Write(ctx, insert)
	for key != nil && errors.Is(err, routing.ErrAmbiguousCommit) && ctx.Err() == nil {
		s.cfg.Logger.Info("commit outcome unknown; running the idempotent insert again", "key", *key, "error", err)
		lsn, err = s.cfg.Router.Write(ctx, insert)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.setNode(w, server)
	w.Header().Set(HeaderLSN, lsn.String())
	http.SetCookie(w, &http.Cookie{Name: CookieLSN, Value: lsn.String(), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	writeJSON(w, http.StatusCreated, n)
}

// token returns the request's read-your-writes token (0: none).
func token(r *http.Request) (routing.LSN, error) {
	v := r.Header.Get(HeaderLSN)
	if v == "" {
		if c, err := r.Cookie(CookieLSN); err == nil {
			v = c.Value
		}
	}
	if v == "" {
		return 0, nil
	}
	return routing.ParseLSN(v)
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "id must be an integer")
		return
	}
	after, err := token(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad read-your-writes token: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	var n Note
	var server string
	found := true
	err = s.cfg.Router.Read(ctx, routing.ReadOptions{After: after}, func(tx pgx.Tx) error {
		server, found = serverOf(tx), true
		err := tx.QueryRow(ctx, `SELECT id, text, created_at FROM notes WHERE id = $1`, id).Scan(&n.ID, &n.Text, &n.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.setNode(w, server)
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no note %d", id))
		return
	}
	writeJSON(w, http.StatusOK, n)
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) {
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l < 1 || l > 1000 {
			writeError(w, http.StatusBadRequest, "limit must be 1 to 1000")
			return
		}
		limit = l
	}
	after, err := token(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad read-your-writes token: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	var out []Note
	var server string
	err = s.cfg.Router.Read(ctx, routing.ReadOptions{After: after}, func(tx pgx.Tx) error {
		server, out = serverOf(tx), []Note{}
		rows, err := tx.Query(ctx, `SELECT id, text, created_at FROM notes ORDER BY id DESC LIMIT $1`, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Note, error) {
			var n Note
			err := row.Scan(&n.ID, &n.Text, &n.CreatedAt)
			return n, err
		})
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.setNode(w, server)
	writeJSON(w, http.StatusOK, out)
}

// topologyNode is one member in GET /topology.
type topologyNode struct {
	Name     string `json:"name"`               // member name
	Addr     string `json:"addr"`               // host:port
	Role     string `json:"role"`               // as the router treats it
	State    string `json:"state"`              // member state
	Timeline int64  `json:"timeline,omitempty"` // 0 when unknown
	LagBytes int64  `json:"lag_bytes"`          // -1 when unknown
	Problem  string `json:"problem,omitempty"`  // why it gets no traffic
}

func (s *Service) topology(w http.ResponseWriter, _ *http.Request) {
	t := s.cfg.Router.Topology()
	out := struct {
		Leader      string         `json:"leader"`
		Holding     bool           `json:"holding_writes"`
		Nodes       []topologyNode `json:"nodes"`
		RouterStats routing.Stats  `json:"router_stats"`
	}{Leader: t.Epoch.Leader, Holding: t.Holding, Nodes: []topologyNode{}, RouterStats: s.cfg.Router.Stats()}
	for _, n := range t.Nodes {
		out.Nodes = append(out.Nodes, topologyNode{Name: n.Name, Addr: n.Addr, Role: n.Role.String(), State: n.State,
			Timeline: n.Timeline, LagBytes: n.Lag, Problem: n.Problem})
	}
	writeJSON(w, http.StatusOK, out)
}

// serverOf returns host:port of the server a transaction runs on.
func serverOf(tx pgx.Tx) string {
	c := tx.Conn().Config()
	return fmt.Sprintf("%s:%d", c.Host, c.Port)
}

// setNode names the member at addr in the Pgha-Node header.
func (s *Service) setNode(w http.ResponseWriter, addr string) {
	name := addr
	for _, n := range s.cfg.Router.Topology().Nodes {
		if n.Addr == addr {
			name = n.Name
			break
		}
	}
	w.Header().Set(HeaderNode, name)
}

// fail answers a routing or database error: 503 with Retry-After when no
// node could serve in time, 500 otherwise.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	msg := err.Error()
	switch {
	case errors.Is(err, routing.ErrAmbiguousCommit):
		msg = "commit outcome unknown (send an Idempotency-Key to make the write safe to retry): " + msg
	case errors.Is(err, routing.ErrNoPrimary), errors.Is(err, routing.ErrNoNode), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, routing.ErrClosed):
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	if r.Context().Err() != nil {
		return // the client went away
	}
	s.cfg.Logger.Warn("request failed", "method", r.Method, "path", r.URL.Path, "code", code, "error", err)
	writeError(w, code, msg)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": strings.TrimSpace(msg)})
}
