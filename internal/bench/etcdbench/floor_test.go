package main

import "testing"

func TestMeasureFloor(t *testing.T) {
	f, err := measureFloor(t.TempDir(), 200, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if f.fsync <= 0 || f.overwrite <= 0 || f.rtt <= 0 || f.sum() != f.fsync+f.rtt {
		t.Fatalf("floor %+v: every part must be measured", f)
	}
	t.Logf("fsync of an append %s, in place %s, loopback round trip %s", f.fsync, f.overwrite, f.rtt)
}
