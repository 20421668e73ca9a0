package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustfed/trustfed/client"
)

// annotationCredential marks a command whose calls are made by a member
// node: its value is credentialMember.
const (
	annotationCredential = "trustfed/credential"
	credentialMember     = "member"
)

// memberCall marks cmd as a member call (see credentialsLong).
func memberCall(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[annotationCredential] = credentialMember
	return cmd
}

func isMemberCall(cmd *cobra.Command) bool {
	return cmd.Annotations[annotationCredential] == credentialMember
}

// credentialsLong is the precedence, as --help says it.
const credentialsLong = `Credentials: a bearer token (--token, --token-file, TRUSTFED_TOKEN,
TRUSTFED_TOKEN_FILE) or a member node's client certificate (--cert/--key,
TRUSTFED_CERT/TRUSTFED_KEY). Only one is sent. A flag beats the environment;
when both come from the same place, member calls (check, authorization
request, session, events ack) use the certificate and every other command the
token. When both are set, the CLI says on stderr which one it used.`

// source says where a credential came from, for the note on stderr.
type credSource struct {
	rank int    // 0 none, 1 environment, 2 flag
	name string // "--token", "TRUSTFED_CERT", ...
}

// tokenSource and certSource rank the two credentials.
func (a *app) tokenSource(cmd *cobra.Command) credSource {
	switch f := cmd.Flags(); {
	case f.Changed("token"):
		return credSource{2, "--token"}
	case f.Changed("token-file"):
		return credSource{2, "--token-file"}
	case a.token != "":
		return credSource{1, client.EnvToken}
	case a.tokenFile != "":
		return credSource{1, client.EnvTokenFile}
	}
	return credSource{}
}

func (a *app) certSource(cmd *cobra.Command) credSource {
	switch {
	case cmd.Flags().Changed("cert"):
		return credSource{2, "--cert"}
	case a.cert != "":
		return credSource{1, client.EnvCert}
	}
	return credSource{}
}

// useCertificate decides between the token and the member certificate when
// both are set (credentialsLong), and says which it used.
func (a *app) useCertificate(cmd *cobra.Command) bool {
	tok, cert := a.tokenSource(cmd), a.certSource(cmd)
	switch {
	case cert.rank == 0:
		return false
	case tok.rank == 0:
		return true
	}
	useCert := cert.rank > tok.rank || (cert.rank == tok.rank && isMemberCall(cmd))
	used, dropped := "the bearer token from "+tok.name, "the member certificate from "+cert.name
	if useCert {
		used, dropped = dropped, used
	}
	fmt.Fprintf(a.stderr, "note: using %s; %s is not sent (see trustfed --help, Credentials)\n", used, dropped)
	return useCert
}

// hintError carries the next step to take after err.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() + "\n" + e.hint }
func (e *hintError) Unwrap() error { return e.err }

// memberCallHint adds to a refused member call made without a member
// certificate what to do instead.
func memberCallHint(cmd *cobra.Command, err error, usedCert bool) error {
	if err == nil || usedCert || !isMemberCall(cmd) {
		return err
	}
	if c := status.Code(err); c != codes.PermissionDenied && c != codes.Unauthenticated {
		return err
	}
	var he *hintError
	if errors.As(err, &he) {
		return err
	}
	return &hintError{err: err, hint: fmt.Sprintf(`hint: %q is a member call: it is made by a member node with its member certificate, not with a bearer token.
  trustfed member enrol ORG NODE --org-key ORG.key --node-pubkey NODE.key.pub   # once, as the organisation
  trustfed member cert ORG NODE --node-key NODE.key --out-cert NODE.crt        # as the node
  trustfed --cert NODE.crt --key NODE.key %s ...   (or TRUSTFED_CERT/TRUSTFED_KEY)`, cmd.CommandPath(), cmd.CommandPath()[len("trustfed "):])}
}
