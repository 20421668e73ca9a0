package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/consensus"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/registry/state"
)

func newSnapshotCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("snapshot", "Back up the registry's state (with its audit log) and start a new cluster from a backup")
	cmd.Long = `"snapshot save" asks a registry node (any one; admin token) for a
consistent snapshot: taken after a linearizable read, so it holds every
write acknowledged before the call, the audit log included; SHA-256
checksummed and signed by the answering node's endorsed key.
"snapshot inspect" checks a saved file and says what it holds;
"snapshot restore" starts a new cluster from it (offline, into an empty
data dir). See docs/operations.md, "Backup and restore".`
	cmd.AddCommand(newSnapshotSaveCmd(a), newSnapshotInspectCmd(a), newSnapshotRestoreCmd(a))
	return cmd
}

// snapshotFile is a backup read back: its info, seal and signed statement.
type snapshotFile struct {
	Info      *trustfedv1.SnapshotInfo
	Seal      *trustfedv1.SnapshotSeal
	Statement *trustfedv1.SnapshotStatement
}

func newSnapshotSaveCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Save a consistent, signed snapshot of the registry (admin token) into FILE",
		Args:  exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				sf, err := saveSnapshot(ctx, c, args[0])
				if err != nil {
					return err
				}
				return a.print(sf.Statement, func(w io.Writer) error {
					t := newTable(w)
					t.row("Saved:", args[0])
					snapshotRows(t, sf)
					return t.flush()
				})
			})
		},
	}
}

// saveSnapshot streams a snapshot into path (through path.part, renamed
// once the stream was whole and its checksum matched).
func saveSnapshot(ctx context.Context, c *client.Client, path string) (*snapshotFile, error) {
	stream, err := c.Cluster().SaveSnapshot(ctx, &trustfedv1.SaveSnapshotRequest{})
	if err != nil {
		return nil, err
	}
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshot save: %w", err)
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(part) // gone already once renamed
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	sf := &snapshotFile{}
	h := sha256.New()
	var size uint64
	for sf.Seal == nil {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("snapshot save: the stream ended without its seal: retry")
		}
		if err != nil {
			return nil, err
		}
		switch p := msg.Part.(type) {
		case *trustfedv1.SaveSnapshotResponse_Info:
			sf.Info = p.Info
		case *trustfedv1.SaveSnapshotResponse_Chunk:
			h.Write(p.Chunk)
			size += uint64(len(p.Chunk))
		case *trustfedv1.SaveSnapshotResponse_Seal:
			sf.Seal = p.Seal
		}
		if _, err := protodelim.MarshalTo(w, msg); err != nil {
			return nil, fmt.Errorf("snapshot save: write %s: %w", part, err)
		}
	}
	if err := checkSeal(sf, size, h.Sum(nil)); err != nil {
		return nil, fmt.Errorf("snapshot save: %w", err)
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("snapshot save: write %s: %w", part, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("snapshot save: sync %s: %w", part, err)
	}
	if err := os.Rename(part, path); err != nil {
		return nil, fmt.Errorf("snapshot save: %w", err)
	}
	return sf, nil
}

// checkSeal decodes the seal's statement and checks that it describes the
// info and the chunks read (size bytes hashing to sum).
func checkSeal(sf *snapshotFile, size uint64, sum []byte) error {
	if sf.Info == nil {
		return errors.New("no snapshot info before the data")
	}
	if sf.Info.Format != registry.SnapshotFormat {
		return fmt.Errorf("snapshot format %d is not supported (want %d)", sf.Info.Format, registry.SnapshotFormat)
	}
	var st trustfedv1.SnapshotStatement
	if err := proto.Unmarshal(sf.Seal.GetStatement(), &st); err != nil {
		return fmt.Errorf("the seal's statement: %w", err)
	}
	if !proto.Equal(st.Info, sf.Info) {
		return errors.New("the seal's statement describes another snapshot than its info")
	}
	if st.Size != size || !bytes.Equal(st.Sha256, sum) {
		return fmt.Errorf("checksum mismatch: the data is %d bytes with SHA-256 %x, the seal says %d bytes with %x", size, sum, st.Size, st.Sha256)
	}
	sf.Statement = &st
	return nil
}

// snapshotReader reads a snapshot file: Read returns the bytes of its
// chunks, in order, and io.EOF at the seal; info and seal land in sf. A
// file that ends before its seal is io.ErrUnexpectedEOF.
type snapshotReader struct {
	r    *bufio.Reader
	sf   *snapshotFile
	buf  []byte
	size uint64
	n    int
}

func openSnapshot(path string) (*snapshotReader, func() error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	return &snapshotReader{r: bufio.NewReaderSize(f, 1<<20), sf: &snapshotFile{}}, f.Close, nil
}

func (s *snapshotReader) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		if s.sf.Seal != nil {
			return 0, io.EOF
		}
		var msg trustfedv1.SaveSnapshotResponse
		err := protodelim.UnmarshalOptions{MaxSize: 4 << 20}.UnmarshalFrom(s.r, &msg)
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("snapshot file ends before its seal (cut short?): %w", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return 0, fmt.Errorf("snapshot file message %d: %w", s.n, err)
		}
		s.n++
		switch part := msg.Part.(type) {
		case *trustfedv1.SaveSnapshotResponse_Info:
			if s.n != 1 {
				return 0, fmt.Errorf("snapshot file message %d: a second info", s.n)
			}
			s.sf.Info = part.Info
		case *trustfedv1.SaveSnapshotResponse_Chunk:
			if s.sf.Info == nil {
				return 0, errors.New("snapshot file: data before the info: not a trustfed snapshot file")
			}
			s.buf = part.Chunk
		case *trustfedv1.SaveSnapshotResponse_Seal:
			s.sf.Seal = part.Seal
		default:
			return 0, fmt.Errorf("snapshot file message %d: empty: not a trustfed snapshot file", s.n)
		}
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	s.size += uint64(n)
	return n, nil
}

// readSnapshotFile reads the whole file, checks its checksum and, with a
// keys file, its signature; inspect, if set, reads the data as it goes.
func readSnapshotFile(path, keysFile string, inspect func(io.Reader) error) (*snapshotFile, error) {
	sr, closeFile, err := openSnapshot(path)
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	defer func() { _ = closeFile() }()
	h := sha256.New()
	data := io.TeeReader(sr, h)
	if inspect != nil {
		if err := inspect(data); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if _, err := io.Copy(io.Discard, data); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := checkSeal(sr.sf, sr.size, h.Sum(nil)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if keysFile != "" {
		if err := verifySnapshotSignature(sr.sf, keysFile); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return sr.sf, nil
}

// verifySnapshotSignature checks the seal against the node key that
// signed it, from a saved GET /v1/keys answer: the key must belong to the
// node the info names and be valid when the snapshot was taken.
func verifySnapshotSignature(sf *snapshotFile, keysFile string) error {
	var keysResp trustfedv1.GetKeysResponse
	if err := readProtoJSON(keysFile, &keysResp); err != nil {
		return fmt.Errorf("--keys: %w", err)
	}
	keys, err := client.DecisionKeys(&keysResp)
	if err != nil {
		return fmt.Errorf("--keys %s: %w", keysFile, err)
	}
	k, ok := keys[sf.Seal.GetKeyId()]
	if !ok {
		return fmt.Errorf("signed by key %s, which --keys %s does not list", sf.Seal.GetKeyId(), keysFile)
	}
	if k.GetNodeId() != sf.Info.GetNodeId() {
		return fmt.Errorf("signed by key %s of node %q, but the snapshot says node %q took it", k.GetKeyId(), k.GetNodeId(), sf.Info.GetNodeId())
	}
	at := sf.Info.GetCreateTime().AsTime()
	if (k.ValidFrom != nil && at.Before(k.ValidFrom.AsTime())) || (k.ValidUntil != nil && !at.Before(k.ValidUntil.AsTime())) ||
		(k.RevokeTime != nil && !at.Before(k.RevokeTime.AsTime())) {
		return fmt.Errorf("key %s was not valid at %s, when the snapshot was taken", k.GetKeyId(), at.UTC().Format(time.RFC3339))
	}
	return attestation.Verify(k.GetPublicKey(), attestation.PurposeSnapshot, sf.Seal.GetStatement(), sf.Seal.GetSignature())
}

func snapshotRows(t *table, sf *snapshotFile) {
	i := sf.Info
	t.row("Node:", i.GetNodeId()+" (version "+i.GetVersion()+")")
	t.row("Taken:", i.GetCreateTime().AsTime().UTC().Format(time.RFC3339))
	t.row("Raft index:", fmt.Sprintf("%d (term %d; read index %d)", i.GetIndex(), i.GetTerm(), i.GetReadIndex()))
	t.row("Size:", fmt.Sprintf("%d bytes", sf.Statement.GetSize()))
	t.row("SHA-256:", hex.EncodeToString(sf.Statement.GetSha256()))
	t.row("Signed by:", "key "+sf.Seal.GetKeyId())
}

// inspection is what snapshot inspect reports, for -o json.
type inspection struct {
	File              string                `json:"file"`
	NodeID            string                `json:"nodeId"`
	Index             uint64                `json:"index"`
	Term              uint64                `json:"term"`
	ReadIndex         uint64                `json:"readIndex"`
	CreateTime        time.Time             `json:"createTime"`
	Size              uint64                `json:"size"`
	SHA256            string                `json:"sha256"`
	KeyID             string                `json:"keyId"`
	SignatureVerified bool                  `json:"signatureVerified"`
	AppliedIndex      uint64                `json:"appliedIndex"`
	State             state.SnapshotSummary `json:"state"`
}

func newSnapshotInspectCmd(a *app) *cobra.Command {
	var keysFile string
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Check a snapshot file (checksum, audit root, signature with --keys) and show what it holds",
		Long: `Read a snapshot file offline: check its SHA-256 against the signed seal,
count the rows of every table, recompute the state commitment from them and
the audit log's Merkle root from its entries and, with --keys (a saved GET /v1/keys answer, e.g.
"curl https://HOST:8443/v1/keys > keys.json"), check the seal's signature
by the node key that made it. Exits non-zero on any mismatch.`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out inspection
			sf, err := readSnapshotFile(args[0], keysFile, func(r io.Reader) error {
				applied, _, err := consensus.SnapshotStateMachine(r)
				if err != nil {
					return err
				}
				out.AppliedIndex = applied
				out.State, err = state.InspectSnapshot(r)
				return err
			})
			if err != nil {
				return err
			}
			i := sf.Info
			out.File, out.NodeID, out.Index, out.Term, out.ReadIndex = args[0], i.GetNodeId(), i.GetIndex(), i.GetTerm(), i.GetReadIndex()
			out.CreateTime, out.Size, out.SHA256 = i.GetCreateTime().AsTime().UTC(), sf.Statement.GetSize(), hex.EncodeToString(sf.Statement.GetSha256())
			out.KeyID, out.SignatureVerified = sf.Seal.GetKeyId(), keysFile != ""
			if a.output == outputJSON {
				return writePlainJSON(a.stdout, out)
			}
			t := newTable(a.stdout)
			t.row("File:", args[0])
			snapshotRows(t, sf)
			if out.SignatureVerified {
				t.row("Signature:", "verified against "+keysFile)
			} else {
				t.row("Signature:", "not checked (give --keys, a saved GET /v1/keys answer)")
			}
			t.row("State index:", fmt.Sprint(out.State.Index))
			t.row("State commitment:", fmt.Sprintf("%x (recomputed from the rows: an audit checkpoint at that index carries it)", out.State.StateCommitment))
			for _, tc := range out.State.Tables {
				t.row("Table:", fmt.Sprintf("%s %d", tc.Table, tc.Rows))
			}
			if out.State.HasAudit {
				t.row("Audit log:", fmt.Sprintf("%d entries, root %x (recomputed from the entries)", out.State.AuditSize, out.State.AuditRoot))
			} else {
				t.row("Audit log:", "none (the server ran without one)")
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&keysFile, "keys", "", "check the signature with the registry's public keys: a saved GET /v1/keys answer")
	return cmd
}

// restored is what snapshot restore did, for -o json.
type restored struct {
	DataDir  string `json:"dataDir"`
	NodeID   string `json:"nodeId"`
	RaftAddr string `json:"raftAddr"`
	Index    uint64 `json:"index"`
	Term     uint64 `json:"term"`
}

func newSnapshotRestoreCmd(a *app) *cobra.Command {
	var dataDir, nodeID, raftAddr, keysFile string
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR",
		Short: "Offline: make DIR the data dir of the first server of a new cluster whose state is the snapshot",
		Long: `Check FILE (checksum; signature too with --keys) and write it into DIR, the
data dir of a server that has no Raft state and no audit log (a new one,
or an old one after "trustfed cluster repair" moved its state aside).
Started as before (without -bootstrap or -join), the server restores the
state and the audit log, becomes the single voter of a new cluster and
continues the log after the snapshot's index; the other servers join it
with empty data dirs. The node id and Raft address come from DIR/addrs.json
(a data dir a server ran in) or from --node-id and --raft-addr; the Raft
address must be the one the server will advertise. Keep the node's
signing key (DIR/node-signing.key) to keep its endorsement; a new key must
be endorsed (docs/keys.md). See docs/operations.md, "Disaster recovery".`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir == "" {
				return usageErrorf("--data-dir is required")
			}
			if _, err := os.Stat(filepath.Join(dataDir, "audit")); err == nil {
				return fmt.Errorf("%s already holds an audit log (%s): restore into a new data dir, or move it aside with \"trustfed cluster repair --data-dir %s\"",
					dataDir, filepath.Join(dataDir, "audit"), dataDir)
			}
			self, err := restoreSelf(dataDir, nodeID, raftAddr)
			if err != nil {
				return err
			}
			sf, err := readSnapshotFile(args[0], keysFile, nil)
			if err != nil {
				return err
			}
			sr, closeFile, err := openSnapshot(args[0])
			if err != nil {
				return fmt.Errorf("read snapshot: %w", err)
			}
			defer func() { _ = closeFile() }()
			if err := consensus.RestoreSnapshot(filepath.Join(dataDir, "raft"), self, sf.Info.GetIndex(), sf.Info.GetTerm(), sr); err != nil {
				return err
			}
			out := restored{DataDir: dataDir, NodeID: self.ID, RaftAddr: self.RaftAddr, Index: sf.Info.GetIndex(), Term: sf.Info.GetTerm()}
			if a.output == outputJSON {
				return writePlainJSON(a.stdout, out)
			}
			t := newTable(a.stdout)
			t.row("Restored:", fmt.Sprintf("%s (index %d, term %d) into %s", args[0], out.Index, out.Term, dataDir))
			t.row("Voter:", self.ID+" at "+self.RaftAddr+", alone")
			t.row("Next:", "start the server on "+dataDir+" without -bootstrap or -join; then start the others with new data dirs and -join its gRPC address")
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the new server's data dir (required; no Raft state, no audit log)")
	cmd.Flags().StringVar(&nodeID, "node-id", "", "the new server's node id (default: from DIR/addrs.json)")
	cmd.Flags().StringVar(&raftAddr, "raft-addr", "", "the Raft address the new server will advertise (default: from DIR/addrs.json)")
	cmd.Flags().StringVar(&keysFile, "keys", "", "check the snapshot's signature first with these keys (a saved GET /v1/keys answer)")
	return cmd
}

// restoreSelf is recoverySelf, which reads addrs.json when a flag is
// missing, for a data dir that may not exist yet.
func restoreSelf(dataDir, nodeID, raftAddr string) (consensus.RecoveryServer, error) {
	if nodeID != "" && raftAddr != "" {
		if err := consensus.CheckAddress(raftAddr); err != nil {
			return consensus.RecoveryServer{}, usageErrorf("--raft-addr %v", err)
		}
		if err := attestation.ValidateNodeID(nodeID); err != nil {
			return consensus.RecoveryServer{}, usageErrorf("--node-id %v", err)
		}
		return consensus.RecoveryServer{ID: nodeID, RaftAddr: raftAddr}, nil
	}
	return recoverySelf(dataDir, nodeID, raftAddr)
}
