package registry

import (
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// restRealm is the realm of REST's bearer challenges (also /metrics').
const restRealm = `Bearer realm="trustfed"`

// restUnauthenticated prepares a REST 401 (RFC 6750): grpc-gateway would
// put the status message in WWW-Authenticate, which is not a challenge. The
// answer gets `Bearer realm="trustfed"`, with error="invalid_token" when a
// bearer token was sent and refused, or error="invalid_request" when the
// Authorization header is not a bearer token; the body keeps the message.
// A request without credentials is told to send a token: REST never
// presents a client certificate, so the gRPC message's "or a client
// certificate" does not apply.
func restUnauthenticated(w http.ResponseWriter, r *http.Request, err error) (http.ResponseWriter, error) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unauthenticated {
		return w, err
	}
	challenge := restRealm
	switch auth := r.Header.Get("Authorization"); {
	case auth == "":
		err = status.Error(codes.Unauthenticated, `missing credentials: send "Authorization: Bearer <token>" (REST accepts bearer tokens only)`)
	case len(auth) > 7 && strings.EqualFold(auth[:7], "bearer "):
		challenge += `, error="invalid_token"`
	default:
		challenge += `, error="invalid_request"`
	}
	return &challengeWriter{ResponseWriter: w, challenge: challenge}, err
}

// challengeWriter sets WWW-Authenticate as the header is written, over
// whatever the error handler put there.
type challengeWriter struct {
	http.ResponseWriter
	challenge string
}

func (c *challengeWriter) WriteHeader(code int) {
	c.Header().Set("WWW-Authenticate", c.challenge)
	c.ResponseWriter.WriteHeader(code)
}

func (c *challengeWriter) Write(b []byte) (int, error) {
	if c.Header().Get("WWW-Authenticate") != c.challenge {
		c.Header().Set("WWW-Authenticate", c.challenge) // Write without WriteHeader
	}
	return c.ResponseWriter.Write(b)
}

func (c *challengeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
