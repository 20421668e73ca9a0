package attestation

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The in-memory batch tree gives RFC 6962 roots and inclusion proofs: every
// proof of every leaf, for every size up to 70, verifies with the merkle
// module's own verifier against the tree's root, and no other leaf does.
func TestBatchTreeProofsVerifyWithTheMerkleModule(t *testing.T) {
	for n := 1; n <= 70; n++ {
		leaves := make([][]byte, n)
		for i := range leaves {
			leaves[i] = fmt.Appendf(nil, "statement %d of %d", i, n)
		}
		tree := NewBatchTree(leaves)
		for i := range leaves {
			p := tree.Proof(uint64(i))
			if err := proof.VerifyInclusion(batchHasher, uint64(i), uint64(n), batchHasher.HashLeaf(leaves[i]), p, tree.Root()); err != nil {
				t.Fatalf("size %d leaf %d: %v", n, i, err)
			}
			if err := proof.VerifyInclusion(batchHasher, uint64(i), uint64(n), batchHasher.HashLeaf([]byte("other")), p, tree.Root()); err == nil {
				t.Fatalf("size %d leaf %d: a different statement verified", n, i)
			}
		}
	}
}

type testNode struct {
	id  string
	key ed25519.PrivateKey
	rk  *trustfedv1.RegistryKey
}

func newTestNodes(t *testing.T, n int, from, until time.Time) ([]testNode, DecisionKeys) {
	t.Helper()
	keys := DecisionKeys{}
	var out []testNode
	for i := range n {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("n%d", i+1)
		rk := &trustfedv1.RegistryKey{KeyId: Fingerprint(pub), PublicKey: pub, NodeId: id, ValidFrom: timestamppb.New(from), ValidUntil: timestamppb.New(until)}
		keys[rk.KeyId] = rk
		out = append(out, testNode{id: id, key: priv, rk: rk})
	}
	return out, keys
}

func certify(t *testing.T, stmts [][]byte, leaf int, signers []testNode) *trustfedv1.DecisionCertificate {
	t.Helper()
	return certifyRefusing(t, stmts, leaf, signers, nil)
}

// certifyRefusing is certify by signers whose head lists refused.
func certifyRefusing(t *testing.T, stmts [][]byte, leaf int, signers []testNode, refused []uint64) *trustfedv1.DecisionCertificate {
	t.Helper()
	tree := NewBatchTree(stmts)
	head, err := MarshalBatchHead(&trustfedv1.DecisionBatchHead{Origin: "test", LogIndex: 9, Size: tree.Size(), Root: tree.Root(), Refused: refused})
	if err != nil {
		t.Fatal(err)
	}
	c := &trustfedv1.DecisionCertificate{BatchHead: head, LeafIndex: uint64(leaf), InclusionProof: tree.Proof(uint64(leaf))}
	for _, s := range signers {
		c.Signatures = append(c.Signatures, &trustfedv1.BatchSignature{NodeId: s.id, KeyId: s.rk.KeyId, Signature: Sign(s.key, PurposeDecisionBatch, head)})
	}
	return c
}

// A certificate needs a quorum of distinct nodes' valid signatures over the
// head whose root includes the statement: fewer, the same node twice, a key
// of another node, a revoked key, a changed statement or a changed head are
// all refused.
func TestVerifyCertificateNeedsAQuorumOfDistinctNodes(t *testing.T) {
	now := time.Now()
	nodes, keys := newTestNodes(t, 3, now.Add(-time.Hour), now.Add(time.Hour))
	stmts := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	need := Quorum(keys, now)
	if need != 2 {
		t.Fatalf("quorum of 3 nodes = %d, want 2", need)
	}
	if _, err := VerifyCertificate(stmts[1], certify(t, stmts, 1, nodes[:2]), keys, now, need); err != nil {
		t.Fatalf("two of three nodes: %v", err)
	}
	cases := map[string]func() (*trustfedv1.DecisionCertificate, []byte, DecisionKeys){
		"one node": func() (*trustfedv1.DecisionCertificate, []byte, DecisionKeys) {
			return certify(t, stmts, 1, nodes[:1]), stmts[1], keys
		},
		"the same node twice": func() (*trustfedv1.DecisionCertificate, []byte, DecisionKeys) {
			return certify(t, stmts, 1, []testNode{nodes[0], nodes[0]}), stmts[1], keys
		},
		"a key claimed by another node": func() (*trustfedv1.DecisionCertificate, []byte, DecisionKeys) {
			c := certify(t, stmts, 1, nodes[:2])
			c.Signatures[1].NodeId = "n3"
			return c, stmts[1], keys
		},
		"a revoked key": func() (*trustfedv1.DecisionCertificate, []byte, DecisionKeys) {
			k2 := map[string]*trustfedv1.RegistryKey{}
			for id, k := range keys {
				k2[id] = k
			}
			r := proto.CloneOf(nodes[1].rk)
			r.RevokeTime = timestamppb.New(now.Add(-time.Minute))
			k2[r.KeyId] = r
			return certify(t, stmts, 1, nodes[:2]), stmts[1], k2
		},
		"another statement": func() (*trustfedv1.DecisionCertificate, []byte, DecisionKeys) {
			return certify(t, stmts, 1, nodes[:2]), []byte("forged"), keys
		},
		"a changed head": func() (*trustfedv1.DecisionCertificate, []byte, DecisionKeys) {
			c := certify(t, stmts, 1, nodes[:2])
			c.BatchHead = bytes.Replace(c.BatchHead, []byte("test"), []byte("tesT"), 1)
			return c, stmts[1], keys
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			c, st, ks := mk()
			if _, err := VerifyCertificate(st, c, ks, now, need); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// A head lists the decisions its signers do not vouch for: a certificate
// for one of them is refused, the others of the batch verify; a head whose
// refused leaves are not strictly ascending or fall outside the batch is
// refused whatever the leaf.
func TestVerifyCertificateRefusesALeafTheSignersRefused(t *testing.T) {
	now := time.Now()
	nodes, keys := newTestNodes(t, 3, now.Add(-time.Hour), now.Add(time.Hour))
	stmts := [][]byte{[]byte("a"), []byte("b"), []byte("c"), []byte("d")}
	need := Quorum(keys, now)
	for _, leaf := range []int{0, 2, 3} {
		if _, err := VerifyCertificate(stmts[leaf], certifyRefusing(t, stmts, leaf, nodes[:2], []uint64{1}), keys, now, need); err != nil {
			t.Fatalf("leaf %d, not refused: %v", leaf, err)
		}
	}
	_, err := VerifyCertificate(stmts[1], certifyRefusing(t, stmts, 1, nodes, []uint64{1}), keys, now, need)
	if !errors.Is(err, ErrNotCertified) || !strings.Contains(err.Error(), "decision 1 of the batch was refused by the signers") {
		t.Fatalf("a refused leaf: %v", err)
	}
	for name, refused := range map[string][]uint64{
		"unsorted":     {3, 1},
		"repeated":     {1, 1},
		"out of range": {1, 4},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := VerifyCertificate(stmts[0], certifyRefusing(t, stmts, 0, nodes, refused), keys, now, need); !errors.Is(err, ErrNotCertified) {
				t.Fatalf("accepted a head refusing %v: %v", refused, err)
			}
		})
	}
}
