package pii_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/client/pii"
)

func TestThresholdsSaveLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pii-thresholds.json")
	th := pii.DefaultThresholds()
	require.NoError(t, th.Set(pii.PersonName, 0.75))
	require.NoError(t, th.Set(pii.APIKey, 0.5))
	require.NoError(t, pii.SaveThresholds(path, th))
	got, err := pii.LoadThresholds(path)
	require.NoError(t, err)
	require.Equal(t, th, got)
	require.Equal(t, map[pii.Type]float64{pii.PersonName: 0.75, pii.APIKey: 0.5}, got.Overrides())
}

func TestThresholdsOverrideChangesWhatIsReported(t *testing.T) {
	// A bare high-entropy token is reported at 0.55: below the default, above an override.
	s := "blob Zx9Qm2Lr8Tv4Kp7Wn3Hs6Jd1Fb5Gc0Ya"
	require.Empty(t, pii.Scan(s))
	th := pii.DefaultThresholds()
	require.NoError(t, th.Set(pii.APIKey, 0.5))
	fs := pii.NewScanner(th).Scan(s)
	require.Len(t, fs, 1)
	require.Equal(t, pii.APIKey, fs[0].Type)
}

func TestThresholdsBadFileNamesTheField(t *testing.T) {
	cases := map[string]struct{ body, want string }{
		"version":      {`{"version": 2, "thresholds": {}}`, "version: 2 is not 1"},
		"unknown type": {`{"version": 1, "thresholds": {"SHOE_SIZE": 0.5}}`, `thresholds["SHOE_SIZE"]`},
		"above one":    {`{"version": 1, "thresholds": {"EMAIL": 1.5}}`, `thresholds["EMAIL"]: 1.5 is not within [0, 1]`},
		"negative":     {`{"version": 1, "thresholds": {"SSN": -0.1}}`, `thresholds["SSN"]`},
		"null":         {`{"version": 1, "thresholds": {"JWT": null}}`, `thresholds["JWT"]: null`},
		"string":       {`{"version": 1, "thresholds": {"JWT": "high"}}`, `thresholds["JWT"]: "high" is not a number`},
		"extra field":  {`{"version": 1, "thresholds": {}, "mode": "x"}`, `unknown field "mode"`},
		"not json":     {`{`, "unexpected EOF"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "th.json")
			require.NoError(t, os.WriteFile(path, []byte(tc.body), 0o600))
			_, err := pii.LoadThresholds(path)
			require.ErrorIs(t, err, pii.ErrThresholds)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, path)
		})
	}
	_, err := pii.LoadThresholds(filepath.Join(t.TempDir(), "missing.json"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestThresholdsSetRefusesBadValues(t *testing.T) {
	th := pii.DefaultThresholds()
	require.ErrorIs(t, th.Set(pii.Email, 2), pii.ErrThresholds)
	require.ErrorIs(t, th.Set(0, 0.5), pii.ErrThresholds)
	require.Equal(t, pii.DefaultThresholds(), th, "a refused Set changes nothing")
}
