package consensus

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
)

// Snapshot stream layout (all integers big endian):
//
//	magic   [4]byte  "TFCS"
//	version uint8    1
//	applied uint64   fsm applied index at snapshot time
//	metaLen uint32   length of the metadata JSON
//	meta    []byte   node ID -> API address, JSON object
//	user    ...      StateMachine snapshot bytes, to the end of the stream
var snapshotMagic = [4]byte{'T', 'F', 'C', 'S'}

const (
	snapshotVersion = 1
	maxMetaLen      = 16 << 20
)

var errBadSnapshot = errors.New("bad snapshot header")

// fsmSnapshot is the raft.FSMSnapshot of our fsm: a consistent cut of the
// applied index, node metadata and the user snapshot, all taken on the
// apply goroutine.
type fsmSnapshot struct {
	index uint64
	meta  map[string]string
	user  Snapshot
}

// Snapshot implements raft.FSM. It runs on the apply goroutine.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	us, err := f.sm.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("state machine snapshot: %w", err)
	}
	return &fsmSnapshot{index: f.appliedIndex(), meta: f.metadata(), user: us}, nil
}

// Persist implements raft.FSMSnapshot; any error cancels the sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := writeSnapshotHeader(sink, s.index, s.meta)
	if err == nil {
		err = s.user.Persist(sink)
		if err != nil {
			err = fmt.Errorf("persist state machine snapshot: %w", err)
		}
	}
	if err != nil {
		if cerr := sink.Cancel(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cancel snapshot sink: %w", cerr))
		}
		return err
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close snapshot sink: %w", err)
	}
	return nil
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() { s.user.Release() }

// Restore implements raft.FSM: it reads our header, hands the rest of the
// stream to the user state machine (which replaces its whole state), then
// swaps in the metadata and applied index. Raft closes rc.
func (f *fsm) Restore(rc io.ReadCloser) error {
	index, meta, err := readSnapshotHeader(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if err := f.sm.Restore(rc); err != nil {
		return fmt.Errorf("restore state machine: %w", err)
	}
	f.restored(index, meta)
	f.logger.Info("restored snapshot", "applied_index", index, "nodes", len(meta))
	return nil
}

func writeSnapshotHeader(w io.Writer, index uint64, meta map[string]string) error {
	mb, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("encode snapshot metadata: %w", err)
	}
	hdr := make([]byte, 0, 4+1+8+4+len(mb))
	hdr = append(hdr, snapshotMagic[:]...)
	hdr = append(hdr, snapshotVersion)
	hdr = binary.BigEndian.AppendUint64(hdr, index)
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(len(mb)))
	hdr = append(hdr, mb...)
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	return nil
}

func readSnapshotHeader(r io.Reader) (uint64, map[string]string, error) {
	var fixed [4 + 1 + 8 + 4]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return 0, nil, fmt.Errorf("%w: %w", errBadSnapshot, err)
	}
	if [4]byte(fixed[:4]) != snapshotMagic {
		return 0, nil, fmt.Errorf("%w: magic %q", errBadSnapshot, fixed[:4])
	}
	if v := fixed[4]; v != snapshotVersion {
		return 0, nil, fmt.Errorf("%w: unsupported version %d", errBadSnapshot, v)
	}
	index := binary.BigEndian.Uint64(fixed[5:13])
	n := binary.BigEndian.Uint32(fixed[13:17])
	if n > maxMetaLen {
		return 0, nil, fmt.Errorf("%w: metadata length %d", errBadSnapshot, n)
	}
	mb := make([]byte, n)
	if _, err := io.ReadFull(r, mb); err != nil {
		return 0, nil, fmt.Errorf("%w: metadata: %w", errBadSnapshot, err)
	}
	meta := map[string]string{}
	if err := json.Unmarshal(mb, &meta); err != nil {
		return 0, nil, fmt.Errorf("%w: metadata: %w", errBadSnapshot, err)
	}
	if meta == nil { // JSON "null"
		meta = map[string]string{}
	}
	return index, meta, nil
}
