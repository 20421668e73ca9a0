package main

import "testing"

func TestMeasureFloor(t *testing.T) {
	f, err := measureFloor(t.TempDir(), 20, 200)
	if err != nil {
		t.Fatal(err)
	}
	if f.fsync <= 0 || f.rtt <= 0 || f.sum() != f.fsync+f.rtt {
		t.Fatalf("floor %+v: every part must be measured", f)
	}
	t.Logf("fsync %s, loopback round trip %s", f.fsync, f.rtt)
}
