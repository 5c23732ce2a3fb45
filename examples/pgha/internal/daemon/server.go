package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pgha/pgha/examples/pgha/internal/config"
)

// server is the node's REST API: ha.Node's handler, with TLS, Patroni's
// extra headers, and POST /reload re-reading the configuration file.
type server struct {
	api      http.Handler
	log      hclog.Logger
	onReload func()
	http     *http.Server
	tls      bool
	cert     atomic.Pointer[tls.Certificate]
	headers  atomic.Pointer[[2]map[string]string] // http, https extra headers
}

func newServer(cfg *config.Config, api http.Handler, log hclog.Logger, onReload func()) (*server, error) {
	s := &server{api: api, log: log.Named("restapi"), onReload: onReload}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	if err := s.update(cfg); err != nil {
		return nil, err
	}
	r := cfg.RestAPI
	if r.CertFile != "" {
		s.tls = true
		tc := &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return s.cert.Load(), nil
			},
		}
		if r.VerifyClient != "none" {
			b, err := os.ReadFile(r.CAFile)
			if err != nil {
				return nil, fmt.Errorf("restapi.cafile: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("restapi.cafile: %s holds no PEM certificate", r.CAFile)
			}
			tc.ClientCAs = pool
			tc.ClientAuth = tls.VerifyClientCertIfGiven
			if r.VerifyClient == "required" {
				tc.ClientAuth = tls.RequireAndVerifyClientCert
			}
		}
		s.http.TLSConfig = tc
	}
	return s, nil
}

// update takes the reloadable settings: the certificate and the extra
// headers.
func (s *server) update(cfg *config.Config) error {
	r := cfg.RestAPI
	s.headers.Store(&[2]map[string]string{r.HTTPExtraHeaders, r.HTTPSExtraHeaders})
	if r.CertFile == "" {
		return nil
	}
	if r.KeyFilePassword != "" {
		return errors.New("restapi.keyfile_password: encrypted key files are not implemented yet; use an unencrypted key file")
	}
	key := r.KeyFile
	if key == "" {
		key = r.CertFile
	}
	cert, err := tls.LoadX509KeyPair(r.CertFile, key)
	if err != nil {
		return fmt.Errorf("restapi.certfile: %w", err)
	}
	s.cert.Store(&cert)
	return nil
}

func (s *server) serve(ln net.Listener) error {
	var err error
	if s.tls {
		err = s.http.ServeTLS(ln, "", "")
	} else {
		err = s.http.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// shutdown stops accepting requests and waits for open ones until ctx ends,
// then closes the rest.
func (s *server) shutdown(ctx context.Context) {
	if err := s.http.Shutdown(ctx); err != nil {
		_ = s.http.Close()
	}
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := s.headers.Load(); h != nil {
		for k, v := range h[0] {
			w.Header().Set(k, v)
		}
		if r.TLS != nil {
			for k, v := range h[1] {
				w.Header().Set(k, v)
			}
		}
	}
	if r.Method == http.MethodPost && strings.Trim(r.URL.Path, "/") == "reload" {
		rec := &statusRecorder{ResponseWriter: w}
		s.api.ServeHTTP(rec, r)
		if rec.code == http.StatusAccepted {
			// Patroni's POST /reload is SIGHUP: re-read the file too.
			go s.onReload()
		}
		return
	}
	s.api.ServeHTTP(w, r)
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}
