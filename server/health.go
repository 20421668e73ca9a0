package server

import (
	"context"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/trustfed/trustfed/registry"
)

// healthServer is the standard gRPC health service: SERVING exactly when
// GET /readyz answers 200 (registry.Server.Readiness). The service name is
// "" (the server) or "trustfed"; Watch is not offered (poll Check).
type healthServer struct {
	healthpb.UnimplementedHealthServer
	ready func() registry.Readiness
}

func (h healthServer) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if svc := req.GetService(); svc != "" && svc != "trustfed" {
		return nil, status.Errorf(codes.NotFound, "service %q: this server reports \"\" or \"trustfed\"", svc)
	}
	if h.ready().Ready {
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}, nil
}

// bootstrapPending is registry.Config.Starting for a -bootstrap node: it is
// not ready until its bootstrap admin token is stored (the token file is
// written at start; a call with it before the token is committed would be
// refused).
func (s *Server) bootstrapPending() string {
	if s.cfg.Bootstrap && s.store.Read().TokenCount() == 0 {
		return "storing the bootstrap admin token"
	}
	return ""
}
