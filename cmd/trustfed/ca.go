package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/ids"
)

// Defaults of the ca commands.
const (
	defaultCACommonName = "trustfed CA"
	defaultCAValidity   = 5 * 365 * 24 * time.Hour
	defaultNodeValidity = 365 * 24 * time.Hour
	caCertFileName      = "ca.pem"
	caKeyFileName       = "ca-key.pem"
	caDirMode           = 0o700
	validityHint        = "a positive duration such as 8760h"
)

func newCACmd(a *app) *cobra.Command {
	cmd := newGroupCmd("ca", "Create a cluster CA and issue node TLS certificates (offline)")
	cmd.Long = `Create a certificate authority for a trustfed cluster and issue node
certificates from it. These commands work on local files only and never
contact a server. Node certificates use ECDSA P-256 keys, are valid as TLS
server and client certificates, and carry the URI SAN
spiffe://trustfed/node/<node-id>.`
	cmd.AddCommand(newCAInitCmd(a), newCAIssueNodeCmd(a))
	return cmd
}

// caFiles is what the ca commands wrote, for -o json.
type caFiles struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	NotAfter string `json:"notAfter"`
	NodeID   string `json:"nodeId,omitempty"`
}

func newCAInitCmd(a *app) *cobra.Command {
	var dir, commonName string
	var validity time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create DIR/ca.pem and DIR/ca-key.pem",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usageErrorf("--dir is required")
			}
			if validity <= 0 {
				return usageErrorf("--validity must be %s", validityHint)
			}
			if err := os.MkdirAll(dir, caDirMode); err != nil {
				return fmt.Errorf("create %s: %w", dir, err)
			}
			ca, err := attestation.NewCA(commonName, time.Now(), validity)
			if err != nil {
				return err
			}
			out := caFiles{
				CertFile: filepath.Join(dir, caCertFileName),
				KeyFile:  filepath.Join(dir, caKeyFileName),
				NotAfter: ca.Cert.NotAfter.UTC().Format(time.RFC3339),
			}
			if err := ca.Save(out.CertFile, out.KeyFile, force); err != nil {
				return err
			}
			return a.printFiles(out)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for ca.pem and ca-key.pem (required)")
	cmd.Flags().StringVar(&commonName, "common-name", defaultCACommonName, "subject common name of the CA")
	cmd.Flags().DurationVar(&validity, "validity", defaultCAValidity, "how long the CA is valid")
	cmd.Flags().BoolVar(&force, "force", false, "replace existing files")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

// issueNodeOptions are the flags of "ca issue-node".
type issueNodeOptions struct {
	dir      string
	nodeID   string
	hosts    []string
	outCert  string
	outKey   string
	validity time.Duration
	force    bool
}

// validate checks the flags and fills in default output paths.
func (o *issueNodeOptions) validate() error {
	if o.dir == "" {
		return usageErrorf("--dir is required")
	}
	if err := attestation.ValidateNodeID(o.nodeID); err != nil {
		return usageErrorf("--node-id: %w", err)
	}
	if len(o.hosts) == 0 {
		return usageErrorf("at least one --host is required")
	}
	for _, h := range o.hosts {
		if err := attestation.ValidateHost(h); err != nil {
			return usageErrorf("--host: %w", err)
		}
	}
	if o.validity <= 0 {
		return usageErrorf("--validity must be %s", validityHint)
	}
	if o.outCert == "" {
		o.outCert = filepath.Join(o.dir, o.nodeID+".pem")
	}
	if o.outKey == "" {
		o.outKey = filepath.Join(o.dir, o.nodeID+"-key.pem")
	}
	if o.outCert == o.outKey {
		return usageErrorf("--out-cert and --out-key must differ")
	}
	return nil
}

func newCAIssueNodeCmd(a *app) *cobra.Command {
	var o issueNodeOptions
	cmd := &cobra.Command{
		Use:   "issue-node --dir DIR --node-id ID --host H [--host H...] [--out-cert F] [--out-key F]",
		Short: "Issue a node certificate from the CA in DIR",
		Long: `Issue a TLS certificate for a registry node from DIR/ca.pem and DIR/ca-key.pem.
Each --host (an IP address or DNS name the node is reached at) becomes a
subject alternative name. --out-cert and --out-key default to DIR/<node-id>.pem
and DIR/<node-id>-key.pem; the key file is written with mode 0600.`,
		Example: "  trustfed ca issue-node --dir ca --node-id node-1 --host node-1.internal --host 10.0.0.11",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			ca, err := attestation.LoadCA(filepath.Join(o.dir, caCertFileName), filepath.Join(o.dir, caKeyFileName))
			if err != nil {
				return err
			}
			certPEM, keyPEM, err := ca.IssueNode(o.nodeID, o.hosts, time.Now(), o.validity)
			if err != nil {
				return err
			}
			cert, err := attestation.ParseCertificatePEM(certPEM)
			if err != nil {
				return err
			}
			if err := attestation.WritePEMFiles(o.outCert, o.outKey, certPEM, keyPEM, o.force); err != nil {
				return err
			}
			return a.printFiles(caFiles{
				CertFile: o.outCert,
				KeyFile:  o.outKey,
				NotAfter: cert.NotAfter.UTC().Format(time.RFC3339),
				NodeID:   o.nodeID,
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "directory holding ca.pem and ca-key.pem (required)")
	f.StringVar(&o.nodeID, "node-id", "", "node ID, "+ids.Node.String()+" (required)")
	f.StringArrayVar(&o.hosts, "host", nil, "IP address or DNS name of the node (repeatable, at least one)")
	f.StringVar(&o.outCert, "out-cert", "", "certificate output file (default DIR/<node-id>.pem)")
	f.StringVar(&o.outKey, "out-key", "", "key output file (default DIR/<node-id>-key.pem)")
	f.DurationVar(&o.validity, "validity", defaultNodeValidity, "how long the certificate is valid (capped at the CA's expiry)")
	f.BoolVar(&o.force, "force", false, "replace existing files")
	for _, name := range []string{"dir", "node-id", "host"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// printFiles reports the files a ca command wrote.
func (a *app) printFiles(f caFiles) error {
	if a.output == outputJSON {
		return writePlainJSON(a.stdout, f)
	}
	t := newTable(a.stdout)
	t.row("Certificate:", f.CertFile)
	t.row("Key:", f.KeyFile)
	if f.NodeID != "" {
		t.row("Node ID:", f.NodeID)
	}
	t.row("Valid until:", f.NotAfter)
	return t.flush()
}
