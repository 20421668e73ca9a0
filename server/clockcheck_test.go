package server

import (
	"testing"
	"time"

	"github.com/trustfed/trustfed/registry/decision"
)

func TestClockSampleRefuses(t *testing.T) {
	for _, c := range []struct {
		ahead, err time.Duration
		want       bool
	}{
		{0, 0, false},
		{decision.MaxDecisionLead / 2, 0, false},
		{decision.MaxDecisionLead - clockMargin + time.Millisecond, 0, true},
		// The uncertainty counts in the leader's favour.
		{decision.MaxDecisionLead - clockMargin + time.Millisecond, 10 * time.Millisecond, false},
		{30 * time.Second, 100 * time.Millisecond, true},
		{-decision.MaxDecisionAge / 2, 0, false},
		{-(decision.MaxDecisionAge - clockMargin + time.Millisecond), 0, true},
		{-30 * time.Second, 100 * time.Millisecond, true},
	} {
		if got := (clockSample{ahead: c.ahead, err: c.err}).refuses(); got != c.want {
			t.Errorf("leader %s ahead (±%s): refuses = %v, want %v", c.ahead, c.err, got, c.want)
		}
	}
}

func TestClockOffNeedsSoManyRefusalsThatNoQuorumIsLeft(t *testing.T) {
	ok := clockSample{ahead: 0}
	off := clockSample{ahead: 30 * time.Second}
	for _, c := range []struct {
		name    string
		samples []clockSample
		voters  int
		want    bool
	}{
		{"one node", nil, 1, false},
		{"3 voters, both followers refuse", []clockSample{off, off}, 3, true},
		{"3 voters, one follower's clock is the odd one", []clockSample{ok, off}, 3, false},
		{"3 voters, one follower unreachable, the other refuses", []clockSample{off}, 3, false},
		{"3 voters, no follower answered", nil, 3, false},
		{"5 voters, three refuse", []clockSample{off, off, off, ok}, 5, true},
		{"5 voters, two refuse", []clockSample{off, off, ok, ok}, 5, false},
		{"4 voters, two refuse", []clockSample{off, off, ok}, 4, true},
	} {
		if got := clockOff(c.samples, c.voters); got != c.want {
			t.Errorf("%s: clockOff = %v, want %v", c.name, got, c.want)
		}
	}
}
