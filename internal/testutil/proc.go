package testutil

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildBinary builds cmd/trustfed into dir and returns its path. When the
// tests run with -race, so is the binary, so that races in the server show
// up in the end-to-end tests too.
func BuildBinary(dir string) (string, error) {
	return BuildBinaryTags(dir, "trustfed")
}

// BuildBinaryTags builds ./cmd/trustfed as dir/name with build tags (a test
// variant, e.g. "trustfed_forge": a node that forges decisions).
func BuildBinaryTags(dir, name string, tags ...string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/trustfed")...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/trustfed: %w\n%s", err, b)
	}
	return out, nil
}

func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(b))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the trustfed module")
	}
	return filepath.Dir(mod), nil
}

// Addrs is what a server writes to <data-dir>/addrs.json once it listens.
type Addrs struct {
	NodeID   string `json:"node_id"`
	GRPCAddr string `json:"grpc_addr"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	CACert   string `json:"ca_cert"`
}

// Server is a trustfed server process started by a test.
type Server struct {
	t       testing.TB
	Bin     string
	DataDir string
	Args    []string
	// Env is added to the test's environment for the process (every start).
	Env    []string
	Addrs  Addrs
	Stdout *syncBuffer

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartServer starts `trustfed server ARGS... -data-dir DATADIR` and waits
// until it has written its addresses. The process is killed at test cleanup
// if still running, and its log is printed if the test failed.
func StartServer(t testing.TB, bin, dataDir string, args ...string) *Server {
	t.Helper()
	return StartServerEnv(t, bin, dataDir, nil, args...)
}

// StartServerEnv is StartServer with env (KEY=value) added to the
// process's environment, on every start.
func StartServerEnv(t testing.TB, bin, dataDir string, env []string, args ...string) *Server {
	t.Helper()
	s := &Server{t: t, Bin: bin, DataDir: dataDir, Args: args, Env: env}
	s.start()
	t.Cleanup(func() {
		s.Kill()
		b, _ := os.ReadFile(s.logPath())
		if t.Failed() {
			t.Logf("--- log of server in %s (requests it refused left out) ---\n%s", dataDir, tail(withoutRefusals(b), 8000))
			keepLog(t, dataDir, b)
		}
		if bytes.Contains(b, []byte("WARNING: DATA RACE")) {
			t.Errorf("data race in server %s:\n%s", dataDir, tail(b, 8000))
		}
	})
	return s
}

func (s *Server) logPath() string { return filepath.Join(s.DataDir, "server.log") }

// Log is what the server logged so far (all its runs).
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath())
	return string(b)
}

func (s *Server) start() {
	s.t.Helper()
	if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
		s.t.Fatalf("create data dir: %v", err)
	}
	addrsPath := filepath.Join(s.DataDir, "addrs.json")
	_ = os.Remove(addrsPath)
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatalf("open server log: %v", err)
	}
	s.Stdout = &syncBuffer{}
	s.cmd = exec.Command(s.Bin, append([]string{"server", "-data-dir", s.DataDir}, s.Args...)...)
	s.cmd.Stdout = s.Stdout
	if len(s.Env) > 0 {
		s.cmd.Env = append(os.Environ(), s.Env...)
	}
	s.cmd.Stderr = logf
	// Pdeathsig: a test binary that dies without running its cleanups (a
	// panic in a goroutine) takes its servers with it instead of leaving
	// them running.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start server: %v", err)
	}
	s.done = make(chan struct{})
	go func() {
		s.err = s.cmd.Wait()
		_ = logf.Close()
		close(s.done)
	}()
	Eventually(s.t, 30*time.Second, "server writes addrs.json", func() error {
		select {
		case <-s.done:
			b, _ := os.ReadFile(s.logPath())
			return Permanent(fmt.Errorf("server exited early: %v\n%s", s.err, tail(b, 4000)))
		default:
		}
		b, err := os.ReadFile(addrsPath)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &s.Addrs)
	})
}

// Restart starts the server again with the same data dir and arguments.
func (s *Server) Restart(args ...string) {
	s.t.Helper()
	if args != nil {
		s.Args = args
	}
	s.start()
}

// PID is the process id of the running server (0 before it started).
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the process is still running.
// CPUTime is the user+system CPU time the running server process has used
// (Linux /proc), for benchmarks.
func (s *Server) CPUTime() (time.Duration, error) {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0, errors.New("server not started")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// Fields after the ")" that ends the command name: state is field 3,
	// utime 14 and stime 15 (1-based), in clock ticks (100 per second).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat: %q", b)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

func (s *Server) Running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits (up to 15s, then SIGKILL). It returns the
// process's exit error.
func (s *Server) Stop() error {
	if s.cmd == nil || !s.Running() {
		return s.err
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.Kill()
		return errors.New("server did not stop within 15s of SIGTERM")
	}
	return s.err
}

// Kill kills the process (SIGKILL) and waits for it.
func (s *Server) Kill() {
	if s.cmd == nil || !s.Running() {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// withoutRefusals is a server's log without the one line per request it
// refused: under a fault they are most of it and push out why it refused.
// A line counts the ones left out.
func withoutRefusals(b []byte) []byte {
	var out bytes.Buffer
	left := 0
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if bytes.Contains(l, []byte(" request not served: ")) || bytes.Contains(l, []byte(" request refused ")) {
			left++
			continue
		}
		out.Write(l)
	}
	if left > 0 {
		fmt.Fprintf(&out, "(%d lines of refused requests left out)\n", left)
	}
	return out.Bytes()
}

// keepLog copies a failed test's whole server log into
// $TRUSTFED_TEST_LOG_DIR, when set, to read after the test cleaned up.
func keepLog(t testing.TB, dataDir string, b []byte) {
	dir := os.Getenv("TRUSTFED_TEST_LOG_DIR")
	if dir == "" {
		return
	}
	path := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-"+filepath.Base(dataDir)+".log")
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		t.Logf("keep the log of server in %s: %v", dataDir, err)
		return
	}
	t.Logf("whole log of server in %s: %s", dataDir, path)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
