package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/credentials"
)

// bearerToken sends "authorization: Bearer <token>" with every call.
type bearerToken struct {
	token  string
	secure bool
}

var _ credentials.PerRPCCredentials = bearerToken{}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearerToken) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if b.secure {
		ri, ok := credentials.RequestInfoFromContext(ctx)
		if !ok {
			return nil, errors.New("bearer token: no request info")
		}
		if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
			return nil, fmt.Errorf("bearer token needs a secure connection: %w", err)
		}
	}
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (b bearerToken) RequireTransportSecurity() bool { return b.secure }

// validateToken refuses tokens that cannot travel in a header: empty, or
// containing spaces or control characters.
func validateToken(token string) error {
	if token == "" {
		return errors.New("empty token")
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("token contains a space or control character at byte %d", i)
		}
	}
	return nil
}
