package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/trustfed/trustfed/registry"
)

// startHTTP builds the REST gateway (a gRPC client of this node) and the
// HTTPS server for it and /metrics.
func (s *Server) startHTTP() error {
	var err error
	s.gateway, err = registry.NewGateway(context.Background(), dialable(s.lis.grpc.Addr()), s.tls.gateway, s.reg.Fault, s.reg.Readiness)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.reg.MetricsHandler()) // Prometheus, monitor or admin token
	mux.Handle("/", s.gateway)
	stopUI := registerUI(mux, s.reg) // the web dashboard (ui.go)
	s.http = &http.Server{
		Handler:           mux,
		TLSConfig:         s.tls.server,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          s.reg.HTTPErrorLog(s.logger), // TLS handshake failures are audited
	}
	s.http.RegisterOnShutdown(stopUI)
	return nil
}

// serveNetwork serves gRPC, HTTPS and (with -debug-addr) the profiles in
// g until ctx ends, then shuts them down gracefully (5s at most).
func (s *Server) serveNetwork(ctx context.Context, g *errgroup.Group) {
	if s.lis.debug != nil {
		g.Go(func() error { return serveDebug(ctx, s.lis.debug, s.logger) })
	}
	g.Go(func() error {
		if err := s.grpc.Serve(s.lis.grpc); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := s.http.ServeTLS(s.lis.http, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		s.logger.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.http.Shutdown(sctx)
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-sctx.Done():
			s.grpc.Stop()
		}
		return nil
	})
}

// serveDebug serves Go's runtime profiles (net/http/pprof) on lis until
// ctx ends. The endpoint has no authentication, so -debug-addr must be a
// loopback address: it is for the operator on the machine (go tool pprof
// http://127.0.0.1:6060/debug/pprof/profile), never for the network.
func serveDebug(ctx context.Context, lis net.Listener, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("debug profiles served (loopback, no authentication)", "url", "http://"+lis.Addr().String()+"/debug/pprof/")
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("debug server: %w", err)
	}
	return nil
}
