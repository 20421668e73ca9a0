package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestParseDays(t *testing.T) {
	good := map[string]time.Duration{
		"30d": 30 * day, "0d": 0, "1d": day, "720h": 720 * time.Hour, "90m": 90 * time.Minute, "0": 0, " 7d ": 7 * day,
	}
	for in, want := range good {
		got, err := parseDays("--x", in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "d", "-1d", "1.5d", "-1h", "soon", "30 days", "99999999999999d"} {
		_, err := parseDays("--x", in)
		requireUsageError(t, err)
		require.ErrorContains(t, err, "--x", in)
	}
}

func TestFormatDays(t *testing.T) {
	require.Equal(t, "720h0m0s (30d)", formatDays(durationpb.New(30*day)))
	require.Equal(t, "1h0m0s", formatDays(durationpb.New(time.Hour)))
	require.Equal(t, "0s", formatDays(durationpb.New(0)))
	require.Equal(t, "-", formatDays(nil))
}

func TestFederationPolicyChange(t *testing.T) {
	req, err := federationPolicyChange(true, "4", false, "")
	require.NoError(t, err)
	require.NotNil(t, req.OnboardingCapLevel)
	require.Equal(t, uint32(4), req.GetOnboardingCapLevel())
	require.Nil(t, req.OnboardingPeriod)

	req, err = federationPolicyChange(true, "0", true, "0d")
	require.NoError(t, err)
	require.NotNil(t, req.OnboardingCapLevel, "cap 0 is sent explicitly")
	require.Equal(t, uint32(0), req.GetOnboardingCapLevel())
	require.NotNil(t, req.OnboardingPeriod, "period 0 is sent explicitly")
	require.Equal(t, time.Duration(0), req.GetOnboardingPeriod().AsDuration())

	req, err = federationPolicyChange(false, "", true, "14d")
	require.NoError(t, err)
	require.Nil(t, req.OnboardingCapLevel)
	require.Equal(t, 14*day, req.GetOnboardingPeriod().AsDuration())

	_, err = federationPolicyChange(true, "5", false, "")
	requireUsageError(t, err)
	_, err = federationPolicyChange(false, "", true, "-1d")
	requireUsageError(t, err)
}

func TestPassportRevokeChange(t *testing.T) {
	req, err := passportRevokeChange("3f9c2a7b1d0e4f65", "assessment withdrawn")
	require.NoError(t, err)
	require.Equal(t, "3f9c2a7b1d0e4f65", req.GetRevokePassport().GetSerial())
	require.Equal(t, "assessment withdrawn", req.GetReason())
	for _, tt := range [][2]string{{"", "r"}, {"has space", "r"}, {"tab\t", "r"}, {string(make([]byte, 129)), "r"}, {"s1", ""}, {"s1", "  "}} {
		_, err := passportRevokeChange(tt[0], tt[1])
		requireUsageError(t, err)
	}
}
