package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves /livez, /readyz and /metrics.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// Serve listens on addr (host:port, e.g. ":9464") and serves h and the
// metrics of reg until Close. A port that cannot be bound is an error now,
// not a log line later.
func Serve(addr string, h *Health, reg prometheus.Gatherer) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health and metrics server (ADE_WORKER_HTTP_ADDR=%s): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", h.serveLive)
	mux.HandleFunc("GET /readyz", h.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s := &Server{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		ln:   ln,
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on (with the real port when addr
// asked for port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, letting requests in flight finish for a moment.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	return err
}

// ProbeURL is the /readyz URL of a local server listening on addr: an empty
// or wildcard host becomes 127.0.0.1 (":9464" -> http://127.0.0.1:9464/readyz).
func ProbeURL(addr string) (string, error) {
	if addr == "" {
		return "", errors.New("ADE_WORKER_HTTP_ADDR is empty, so the supervisor serves no health endpoint: set it (e.g. :9464) for the supervisor and for this command")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("ADE_WORKER_HTTP_ADDR=%q: want host:port, e.g. :9464", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz", nil
}
