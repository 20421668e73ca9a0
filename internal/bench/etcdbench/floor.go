package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"time"
)

// floor is what a single caller's audited check cannot beat on this
// machine: one fsync of the disk the clusters write to (the audit
// record's Raft commit) and one loopback round trip (the call itself).
// Issue 19's target: a single caller's p50 ≤ 2× their sum.
//
// The fsync is of an append (the file grows by 4 KiB each time), as a log
// append is: the Raft log's bbolt file and the audit log grow, so their
// fsyncs carry the file's metadata too. An fsync of a block overwritten in
// place (overwrite) is cheaper on most file systems and is reported
// alongside, not used.
type floor struct {
	fsync, rtt time.Duration // medians
	overwrite  time.Duration // median fsync of a block written in place
}

func (f floor) sum() time.Duration { return f.fsync + f.rtt }

// measureFloor measures the median of n 4 KiB write+fsync rounds on a
// file in dir (where the benchmark clusters keep their data) and of m
// 64-byte TCP round trips over loopback.
func measureFloor(dir string, n, m int) (floor, error) {
	fs, err := fsyncMedian(dir, n, true)
	if err != nil {
		return floor{}, err
	}
	over, err := fsyncMedian(dir, n, false)
	if err != nil {
		return floor{}, err
	}
	rtt, err := loopbackRTTMedian(m)
	if err != nil {
		return floor{}, err
	}
	return floor{fsync: fs, rtt: rtt, overwrite: over}, nil
}

// fsyncMedian is the median time of n rounds of a 4 KiB write and an
// fsync: appended (the file grows) or over one of 64 blocks in place.
func fsyncMedian(dir string, n int, appendOnly bool) (time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-*")
	if err != nil {
		return 0, fmt.Errorf("fsync floor: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	times := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		off := int64(i) * 4096
		if !appendOnly {
			off = int64(i%64) * 4096
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			return 0, fmt.Errorf("fsync floor: write: %w", err)
		}
		if err := f.Sync(); err != nil {
			return 0, fmt.Errorf("fsync floor: sync: %w", err)
		}
		times = append(times, time.Since(start))
	}
	return median(times), nil
}

func loopbackRTTMedian(m int) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("rtt floor: %w", err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				done <- nil // the client closed
				return
			}
			if _, err := c.Write(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, fmt.Errorf("rtt floor: %w", err)
	}
	buf := make([]byte, 64)
	times := make([]time.Duration, 0, m)
	for range m {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return 0, fmt.Errorf("rtt floor: %w", err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			c.Close()
			return 0, fmt.Errorf("rtt floor: %w", err)
		}
		times = append(times, time.Since(start))
	}
	c.Close()
	if err := <-done; err != nil {
		return 0, fmt.Errorf("rtt floor: echo: %w", err)
	}
	return median(times), nil
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}
