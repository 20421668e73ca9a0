package system_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// `trustfed decision verify` checks a decision a member node printed with
// `-o json check`, offline, against a saved GET /v1/keys answer; any changed
// field, another key or a stale decision is refused.
func TestDecisionVerifyCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	p := startPair(t, "acme", 3, "globex", 3, []string{"ping"})
	d := p.d
	dir := t.TempDir()
	asMember := memberFiles(t, dir, testutil.EnrolMember(t, p.admin, p.fed, "acme", ""))

	res, err := d.http.Get(d.base + "/v1/keys")
	require.NoError(t, err)
	keysJSON, err := io.ReadAll(res.Body)
	require.NoError(t, res.Body.Close())
	require.NoError(t, err)
	keys := filepath.Join(dir, "keys.json")
	require.NoError(t, os.WriteFile(keys, keysJSON, 0o600))

	save := func(name string, data []byte) string {
		f := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(f, data, 0o600))
		return f
	}
	decision := func(action string, wantCode int) (string, map[string]any) {
		out, errOut, code := d.cli(t, "", append(asMember, "-o", "json", "check", "--from", "acme", "--to", "globex", "--action", action)...)
		require.Equal(t, wantCode, code, errOut)
		var fields map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &fields), out)
		return save(action+".json", []byte(out)), fields
	}
	// verify runs the verb with no server to talk to.
	verify := func(file string, more ...string) (string, string, int) {
		return d.cli(t, "", append([]string{"--addr", "127.0.0.1:1", "decision", "verify", file, "--keys", keys}, more...)...)
	}

	allowed, fields := decision("ping", 0)
	out, errOut, code := verify(allowed)
	require.Equal(t, 0, code, "%s %s", out, errOut)
	require.Regexp(t, `^VERIFIED ALLOW acme -> globex ping \(effective level \d, required \d\) at index \d+, decided \S+, valid until \S+, certified by 1 registry nodes \(dev; quorum 1\)\n$`, out)

	denied, _ := decision("task_send", 3)
	out, errOut, code = verify(denied)
	require.Equal(t, 0, code, "%s %s", out, errOut)
	require.Contains(t, out, "VERIFIED DENY acme -> globex task_send")
	require.Contains(t, out, "reasons ")

	// The same answer with the proto field names (snake_case).
	var resp trustfedv1.CheckInteractionResponse
	raw, err := os.ReadFile(allowed)
	require.NoError(t, err)
	require.NoError(t, protojson.Unmarshal(raw, &resp))
	snake, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&resp)
	require.NoError(t, err)
	require.Contains(t, string(snake), `"from_level_caps"`)
	out, errOut, code = verify(save("snake.json", snake))
	require.Equal(t, 0, code, "%s %s", out, errOut)

	// -o json prints the verified statement.
	out, errOut, code = d.cli(t, "", "-o", "json", "decision", "verify", allowed, "--keys", keys)
	require.Equal(t, 0, code, errOut)
	var st trustfedv1.DecisionStatement
	require.NoError(t, protojson.Unmarshal([]byte(out), &st), out)
	require.Equal(t, "acme", st.FromOrganizationId)

	valid, err := time.Parse(time.RFC3339Nano, fields["validUntil"].(string))
	require.NoError(t, err)
	out, errOut, code = verify(allowed, "--at", valid.Add(time.Second).Format(time.RFC3339))
	require.Equal(t, 1, code, out)
	require.Contains(t, errOut, "past its valid_until")

	statement, err := base64.StdEncoding.DecodeString(fields["statement"].(string))
	require.NoError(t, err)
	statement[len(statement)-1] ^= 1
	for name, tamper := range map[string]struct {
		change func(map[string]any)
		want   string
	}{
		"decision":        {func(f map[string]any) { f["decision"] = "DECISION_DENY" }, "does not match its signed statement"},
		"effective level": {func(f map[string]any) { f["effectiveLevel"] = 4 }, "does not match its signed statement"},
		"a level cap": {func(f map[string]any) {
			f["toLevelCaps"].([]any)[0].(map[string]any)["level"] = 4
		}, "caps on the parties' levels differ"},
		"statement":           {func(f map[string]any) { f["statement"] = base64.StdEncoding.EncodeToString(statement) }, "not in the signed batch"},
		"certificate removed": {func(f map[string]any) { delete(f, "certificate") }, "not certified by a quorum"},
		"certificate signature": {func(f map[string]any) {
			sig := f["certificate"].(map[string]any)["signatures"].([]any)[0].(map[string]any)
			sig["signature"] = base64.StdEncoding.EncodeToString(make([]byte, 64))
		}, "0 valid node signatures, 1 needed"},
	} {
		var copied map[string]any
		require.NoError(t, json.Unmarshal(raw, &copied))
		tamper.change(copied)
		data, err := json.Marshal(copied)
		require.NoError(t, err)
		out, errOut, code := verify(save("tampered.json", data))
		require.Equal(t, 1, code, "%s: %s", name, out)
		require.Contains(t, errOut, "does not verify", name)
		require.Contains(t, errOut, tamper.want, name)
	}

	// Keys of another registry.
	var other map[string]any
	require.NoError(t, json.Unmarshal(keysJSON, &other))
	for _, k := range other["keys"].([]any) {
		k.(map[string]any)["publicKey"] = base64.StdEncoding.EncodeToString(make([]byte, 32))
	}
	data, err := json.Marshal(other)
	require.NoError(t, err)
	otherKeys := save("other-keys.json", data)
	out, errOut, code = d.cli(t, "", "decision", "verify", allowed, "--keys", otherKeys)
	require.Equal(t, 1, code, out)
	require.Contains(t, errOut, "signature")
}
