package registry

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/trustfed/trustfed/proto/openapi"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protojson"
)

// maxRESTBody bounds a REST request body.
const maxRESTBody = 1 << 20

// Gateway is the REST/JSON front of the gRPC API. It calls this node's own
// gRPC server over TLS, so every REST request passes the same interceptor
// chain as a gRPC one; it never presents a client certificate, so a REST
// caller is only ever who its bearer token says.
type Gateway struct {
	conn    *grpc.ClientConn
	handler http.Handler
}

// JSONMarshalOptions is the one JSON encoding of API messages: REST answers
// with it and the CLI's -o json prints with it (indented). Field names are
// lowerCamelCase; empty lists, zero values and unset messages (null) are
// written, so a client sees every field of the message.
var JSONMarshalOptions = protojson.MarshalOptions{EmitUnpopulated: true}

// NewGateway returns the REST handler for the gRPC server at grpcAddr.
// tlsConfig must trust the server's certificate and carry no client certificate.
// /healthz answers 503 with what fault returns while it is not empty
// (Server.Fault: a diverged state or an audit fault; nil: never);
// /readyz answers what ready reports (nil: always ready).
func NewGateway(ctx context.Context, grpcAddr string, tlsConfig *tls.Config, fault func() string, ready func() Readiness) (*Gateway, error) {
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	if err != nil {
		return nil, fmt.Errorf("gateway: connect to %s: %w", grpcAddr, err)
	}
	routes, err := loadRESTRoutes(openapi.JSON)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	checks := &restChecks{routes: routes}
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   JSONMarshalOptions,
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
		runtime.WithErrorHandler(gatewayErrorHandler), // Retry-After on 429 (ratelimit.go)
		runtime.WithRoutingErrorHandler(checks.routingError),
		// A form-encoded POST is a POST: never served as the GET of the
		// same path, nor turned into another method by X-HTTP-Method-Override.
		runtime.WithDisablePathLengthFallback(),
		runtime.WithDisableHTTPMethodOverride(),
		// Route on the escaped path: an encoded slash in an id stays in the
		// id (which then fails its check) instead of reaching another path.
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptReserved),
	)
	checks.mux = mux
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		trustfedv1.RegisterRegistryServiceHandler,
		trustfedv1.RegisterAdminServiceHandler,
		trustfedv1.RegisterClusterServiceHandler,
		trustfedv1.RegisterMembershipServiceHandler,
		trustfedv1.RegisterCascadeServiceHandler,
		trustfedv1.RegisterAuditServiceHandler,
		trustfedv1.RegisterAccessServiceHandler,
	} {
		if err := register(ctx, mux, conn); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("gateway: register handler: %w", err)
		}
	}
	top := http.NewServeMux()
	top.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi.JSON)
	})
	top.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if fault != nil {
			if f := fault(); f != "" {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(f + "\n"))
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	top.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		r := Readiness{Ready: true}
		if ready != nil {
			r = ready()
		}
		serveReadiness(w, r)
	})
	top.Handle("/", http.MaxBytesHandler(withCallDeadline(checks, restCallTimeout), maxRESTBody))
	return &Gateway{conn: conn, handler: top}, nil
}

// ServeHTTP serves the REST API.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.handler.ServeHTTP(w, r) }

// Close closes the gateway's connection to the gRPC server.
func (g *Gateway) Close() error { return g.conn.Close() }
