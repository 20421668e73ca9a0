package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/registry"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// run executes the CLI with args and returns the process exit code.
func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := newApp(stdout, stderr, getenv)
	root := newRootCmd(a)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	return reportError(stderr, cmd, err)
}

// app holds the global options and the streams every command writes to.
type app struct {
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	addr      string
	token     string
	tokenFile string
	cacert    string
	cert      string
	key       string
	output    string
	timeout   time.Duration
	adminKey  string
	changeTTL time.Duration
	// maxStaleness bounds --stale reads (0: the server's default).
	maxStaleness time.Duration
}

func newApp(stdout, stderr io.Writer, getenv func(string) string) *app {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	return &app{stdout: stdout, stderr: stderr, getenv: getenv}
}

const (
	outputTable = "table"
	outputJSON  = "json"
)

const rootLong = `trustfed is a strongly consistent federation registry for AI agents of
different organisations. "trustfed server" runs a registry node; the other
commands talk to a node over gRPC and TLS.

Global flags default to the environment: TRUSTFED_ADDR, TRUSTFED_TOKEN,
TRUSTFED_TOKEN_FILE, TRUSTFED_CACERT, TRUSTFED_CERT, TRUSTFED_KEY and
TRUSTFED_ADMIN_KEY.

` + adminChangesLong + `

` + credentialsLong + `

Exit codes: 0 success, 1 error, 2 usage error, 3 DENY (trustfed check),
4 gave up waiting (revocation status --wait-timeout, wait-ready).`

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "trustfed",
		Short:         "Federation registry for AI agents of different organisations",
		Long:          rootLong,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != outputTable && a.output != outputJSON {
				return usageErrorf("--output must be %q or %q, got %q", outputTable, outputJSON, a.output)
			}
			if a.timeout < 0 {
				return usageErrorf("--timeout must not be negative")
			}
			return nil
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.Version = buildVersion() // --version prints the same line as `trustfed version`
	root.SetVersionTemplate(versionLine())
	root.Flags().Bool("version", false, "print the version, Go version and commit of this binary (as \"trustfed version\")")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	pf := root.PersistentFlags()
	a.envStringVar(pf, &a.addr, "addr", client.EnvAddr, client.DefaultAddr, "gRPC address of a registry node")
	a.envStringVar(pf, &a.token, "token", client.EnvToken, "", "bearer token")
	a.envStringVar(pf, &a.tokenFile, "token-file", client.EnvTokenFile, "", "file holding the bearer token")
	a.envStringVar(pf, &a.cacert, "cacert", client.EnvCACert, "", "PEM file of the CA that signed the server certificate; empty = system roots")
	a.envStringVar(pf, &a.cert, "cert", client.EnvCert, "", "a member node's client certificate (PEM), e.g. from \"trustfed member cert\"")
	a.envStringVar(pf, &a.key, "key", client.EnvKey, "", "the member node's private key (PEM) for --cert")
	pf.StringVarP(&a.output, "output", "o", outputTable, "output format: table or json")
	pf.DurationVar(&a.timeout, "timeout", client.DefaultTimeout, "timeout of each call to the server")
	pf.DurationVar(&a.maxStaleness, "max-staleness", 0, "with --stale: refuse an answer from a node that last heard from the leader longer ago than this (0 = the server's default, 1m)")
	a.envStringVar(pf, &a.adminKey, "admin-key", envAdminKey, "", "your admin approval key (ed25519 PEM) for admin changes")
	pf.DurationVar(&a.changeTTL, "change-ttl", client.DefaultAdminChangeTTL, "how long an admin change you propose waits for the other admins' approvals (at most 168h)")

	root.AddCommand(
		newServerCmd(a.getenv),
		newVersionCmd(),
		newStatusCmd(a),
		newWaitReadyCmd(a),
		newHealthCmd(a),
		newClusterCmd(a),
		newSnapshotCmd(a),
		newOrgCmd(a),
		newAgreementCmd(a),
		newCheckCmd(a),
		newDecisionCmd(a),
		newFederationCmd(a),
		newAdminCmd(a),
		newKeyCmd(a),
		newRevocationCmd(a),
		newAuditCmd(a),
		newEventsCmd(a),
		newSessionCmd(a),
		newAuthorizationCmd(a),
		newTokenCmd(a),
		newMemberCmd(a),
		newCACmd(a),
		newKeygenCmd(),
		newIssuerCmd(),
		newPassportCmd(),
		newBenchCmd(a),
	)
	prepareTree(root)
	return root
}

// envStringVar defines a string flag that defaults to the environment
// variable env, or to def when env is unset. The help names the variable,
// never its value: a bearer token (or the path of a key) from the
// environment must not end up in scrollback, CI logs or bug reports.
func (a *app) envStringVar(fs *pflag.FlagSet, p *string, name, env, def, usage string) {
	value := a.getenv(env)
	if value == "" {
		value = def
	}
	fs.StringVar(p, name, value, usage+" (env "+env+")")
	fs.Lookup(name).DefValue = def
}

// prepareTree silences cobra's own error printing on every command (errors
// are reported once, by reportError) and marks errors returned once a
// command runs as runtime errors (exit 1); errors cobra returns before that
// (flags, arguments, unknown commands) stay usage errors (exit 2).
func prepareTree(cmd *cobra.Command) {
	cmd.SilenceErrors = true
	cmd.SilenceUsage = true
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error {
			return asRuntimeError(run(c, args))
		}
	}
	for _, sub := range cmd.Commands() {
		prepareTree(sub)
	}
}

// newGroupCmd returns a command that only groups subcommands: run alone it
// prints its help, with an unknown subcommand it is a usage error.
func newGroupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
}

// dial opens a client from the global options, with one credential
// (credentialsLong); usedCert says which.
func (a *app) dial(ctx context.Context, cmd *cobra.Command) (_ *client.Client, usedCert bool, err error) {
	if err := checkAddr(a.addr); err != nil {
		return nil, false, err
	}
	token, err := a.resolveToken(cmd)
	if err != nil {
		return nil, false, err
	}
	certFile, keyFile := a.cert, a.key
	if usedCert = a.useCertificate(cmd); usedCert {
		token = ""
	} else {
		certFile, keyFile = "", ""
	}
	cfg := client.Config{
		Addr:       a.addr,
		Token:      token,
		CACertFile: a.cacert,
		CertFile:   certFile,
		KeyFile:    keyFile,
		Timeout:    a.timeout,
	}
	if a.maxStaleness > 0 {
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithChainUnaryInterceptor(maxStalenessInterceptor(a.maxStaleness)))
	}
	c, err := client.New(ctx, cfg)
	if err != nil {
		return nil, false, err
	}
	return c, usedCert, nil
}

// maxStalenessInterceptor sends the bound of stale reads with every call
// (the server reads it only for CONSISTENCY_STALE reads).
func maxStalenessInterceptor(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx = metadata.AppendToOutgoingContext(ctx, registry.MaxStalenessHeader, d.String())
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// resolveToken picks the token: an explicit --token or --token-file flag
// wins over the environment; between the two sources of the same rank the
// literal token wins.
func (a *app) resolveToken(cmd *cobra.Command) (string, error) {
	tokenSet := cmd.Flags().Changed("token")
	fileSet := cmd.Flags().Changed("token-file")
	switch {
	case tokenSet && fileSet:
		return "", usageErrorf("--token and --token-file are mutually exclusive")
	case tokenSet:
		return a.token, nil
	case fileSet, a.token == "" && a.tokenFile != "":
		if a.tokenFile == "" {
			return "", usageErrorf("--token-file is empty")
		}
		tok, err := client.ReadTokenFile(a.tokenFile)
		if err != nil {
			return "", fmt.Errorf("token: %w", err)
		}
		return tok, nil
	default:
		return a.token, nil
	}
}

// withClient dials, runs fn with the command's context, and closes.
func (a *app) withClient(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client) error) error {
	ctx := cmd.Context()
	c, usedCert, err := a.dial(ctx, cmd)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	return connectionHint(memberCallHint(cmd, fn(ctx, c), usedCert), a.addr, a.cacert, a.timeout)
}

// print writes msg as JSON with -o json, or else runs table.
func (a *app) print(msg proto.Message, table func(io.Writer) error) error {
	if a.output == outputJSON {
		return writeJSON(a.stdout, msg)
	}
	return table(a.stdout)
}

// call makes a write call, retrying it when its outcome is unknown (same
// request, same request id: the registry applies it once).
func call[Req, Resp any](ctx context.Context, method func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	var out Resp
	err := client.RetryUnknown(ctx, func(ctx context.Context) (err error) {
		out, err = method(ctx, req)
		return err
	})
	return out, err
}
