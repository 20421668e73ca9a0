package testutil

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
)

// Linux lets connections to different destinations share a local port;
// the proxy must still name the right socket (and so the right process)
// for each: it matches both ends, not the local port alone.
func TestSocketInodeTellsApartConnectionsSharingALocalPort(t *testing.T) {
	a, b := listen(t), listen(t)
	reuse := func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		}); err != nil {
			return err
		}
		return serr
	}
	first, err := (&net.Dialer{Control: reuse, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}).Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatalf("dial a: %v", err)
	}
	defer first.Close()
	port := first.LocalAddr().(*net.TCPAddr).Port
	second, err := (&net.Dialer{Control: reuse, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}).Dial("tcp", b.Addr().String())
	if err != nil {
		t.Skipf("this kernel did not let two connections share local port %d: %v", port, err)
	}
	defer second.Close()

	for _, c := range []struct {
		conn net.Conn
		to   net.Listener
	}{{first, a}, {second, b}} {
		got, err := socketInode(port, c.to.Addr().(*net.TCPAddr).Port)
		if err != nil {
			t.Fatalf("socketInode: %v", err)
		}
		if want := inodeOf(t, c.conn); got != want {
			t.Errorf("socket from port %d to %s: inode %s, want %s", port, c.to.Addr(), got, want)
		}
	}
	if got := ownerOf(first.LocalAddr(), a.Addr(), []int{os.Getpid()}); got != os.Getpid() {
		t.Errorf("ownerOf = %d, want this process %d", got, os.Getpid())
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// inodeOf is the socket inode behind c's descriptor.
func inodeOf(t *testing.T, c net.Conn) string {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatalf("syscall conn: %v", err)
	}
	var st syscall.Stat_t
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), &st) }); err != nil {
		t.Fatalf("control: %v", err)
	}
	if serr != nil {
		t.Fatalf("fstat: %v", serr)
	}
	return fmt.Sprint(st.Ino)
}

// TestFreeAddrIsBelowTheEphemeralRange: the port FreeAddr picks cannot be
// handed to a ":0" listener or an outgoing connection before the server
// that asked for it binds it.
func TestFreeAddrIsBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	if low < 11000 {
		t.Skipf("the ephemeral range starts at %d: FreeAddr falls back to a \":0\" port", low)
	}
	for range 20 {
		_, p, err := net.SplitHostPort(FreeAddr(t))
		if err != nil {
			t.Fatal(err)
		}
		port, err := strconv.Atoi(p)
		if err != nil {
			t.Fatal(err)
		}
		if port < 10000 || port >= low {
			t.Fatalf("port %d: want one in [10000, %d)", port, low)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", p))
		if err != nil {
			t.Fatalf("the port FreeAddr gave is not free: %v", err)
		}
		ln.Close()
	}
}
