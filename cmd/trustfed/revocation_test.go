package main

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

func TestDrawProgress(t *testing.T) {
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	c := &trustfedv1.Cascade{StartTime: timestamppb.New(start), Acked: 25, CompleteTime: timestamppb.New(start.Add(3200 * time.Millisecond))}
	for range 50 {
		c.Deliveries = append(c.Deliveries, &trustfedv1.Delivery{})
	}
	var b bytes.Buffer
	drawProgress(&b, c)
	require.Equal(t, "\r["+strings.Repeat("#", 15)+strings.Repeat("-", 15)+"] 25/50 acked  3.2s ", b.String())

	b.Reset()
	drawProgress(&b, &trustfedv1.Cascade{StartTime: timestamppb.New(start), CompleteTime: timestamppb.New(start)})
	require.Equal(t, "\r["+strings.Repeat("#", 30)+"] 0/0 acked  0s ", b.String(), "nobody to notify is complete")
}

func TestWriteCascade(t *testing.T) {
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	c := &trustfedv1.Cascade{
		Id:        "evt-00000000000000aa",
		Event:     &trustfedv1.Event{Kind: trustfedv1.EventKind_EVENT_KIND_REVOCATION, OrganizationId: "hub", Reason: "key compromised", Index: 42},
		StartTime: timestamppb.New(start), Acked: 1,
		Deliveries: []*trustfedv1.Delivery{
			{OrganizationId: "p-1", Attempts: 2, FirstAttemptTime: timestamppb.New(start), AckTime: timestamppb.New(start.Add(time.Second)), Channel: trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_WEBHOOK},
			{OrganizationId: "p-2", Attempts: 5, EscalateTime: timestamppb.New(start.Add(240 * time.Second)), LastError: "503"},
		},
	}
	var b bytes.Buffer
	require.NoError(t, writeCascade(&b, c, nil))
	out := squeeze(b.String())
	require.Contains(t, out, "Event: REVOCATION of hub\n")
	require.Contains(t, out, "Acknowledged: 1 of 2\n")
	require.Contains(t, out, "p-1 WEBHOOK 2 2026-11-23T12:00:00Z 2026-11-23T12:00:01Z - -\n")
	require.Contains(t, out, "p-2 - 5 - - 2026-11-23T12:04:00Z 503\n")
	require.NotContains(t, out, "Complete:")
}

// startCascadeFake serves a cascade that never completes (fakeCascade: one
// partner, unacknowledged).
func startCascadeFake(t *testing.T) map[string]string {
	t.Helper()
	fake := &cliFake{}
	addr, ca := serveFake(t, func(srv *grpc.Server) { trustfedv1.RegisterCascadeServiceServer(srv, fake) })
	return map[string]string{client.EnvAddr: addr, client.EnvCACert: ca, client.EnvToken: "t"}
}

// revocation status --wait-timeout: giving up is not success (exit 4, a
// message saying who is still unacknowledged), and with stderr not a
// terminal no progress bar is drawn.
func TestRevocationStatusWaitTimeoutExitsNonZero(t *testing.T) {
	env := startCascadeFake(t)
	code, stdout, stderr := runCLI(env, "revocation", "status", fakeCascadeID, "--wait-timeout", "300ms")
	require.Equal(t, exitTimeout, code, "stdout: %s\nstderr: %s", stdout, stderr)
	require.Contains(t, squeeze(stdout), "Acknowledged: 0 of 1\n", "the cascade is still printed")
	require.Contains(t, stderr, "still 1 of 1 partner(s) unacknowledged after --wait-timeout 300ms")
	require.NotContains(t, stderr, "\r", "no progress bar when stderr is not a terminal")

	code, help, _ := runCLI(env, "revocation", "status", "--help")
	require.Equal(t, exitOK, code)
	require.Contains(t, help, "exits 4")
}

// With stderr a terminal (a pseudo-terminal here), the progress bar is drawn.
func TestRevocationStatusProgressOnTerminal(t *testing.T) {
	env := startCascadeFake(t)
	ptmx, pts := openPTY(t)
	var code int
	done := make(chan struct{})
	go func() {
		defer close(done)
		code = run([]string{"revocation", "status", fakeCascadeID, "--wait-timeout", "600ms"}, io.Discard, pts, func(k string) string { return env[k] })
		_ = pts.Close()
	}()
	out, _ := io.ReadAll(ptmx) // ends with EIO once the terminal side is closed
	<-done
	require.Equal(t, exitTimeout, code)
	require.Contains(t, string(out), "\r[------------------------------] 0/1 acked")
}

// openPTY opens a pseudo-terminal pair; the test closes both.
func openPTY(t *testing.T) (ptmx, pts *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { _ = ptmx.Close() })
	fd := int(ptmx.Fd())
	require.NoError(t, unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	require.NoError(t, err)
	pts, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pts.Close() })
	return ptmx, pts
}
