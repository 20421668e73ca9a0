package registry

import (
	"testing"

	"github.com/stretchr/testify/require"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func TestJSONErrorField(t *testing.T) {
	for _, c := range []struct {
		msg         proto.Message
		body, field string
		desc        string // part of the description
	}{
		{&trustfedv1.UpdateOrganizationRequest{}, `{"name": ["x"]}`, "name", "invalid value for string field name"},
		{&trustfedv1.UpdateOrganizationRequest{}, `{"name": NaN}`, "name", "NaN"},
		{&trustfedv1.UpdateOrganizationRequest{}, `{"name": "a", "requestId": tru}`, "request_id", "tru"},
		{&trustfedv1.UpdateOrganizationRequest{}, `{"bogus": 1}`, "bogus", "unknown field"},
		{&trustfedv1.CreateTokenRequest{}, `{"ttl": "ten days"}`, "ttl", "google.protobuf.Duration"},
		{&trustfedv1.CreateTokenRequest{}, `{"ttl": {"seconds": x}}`, "ttl", ""},
		{&trustfedv1.ProposeAgreementRequest{}, `{"scope": []}`, "scope", ""},
		{&trustfedv1.ProposeAgreementRequest{}, `{"scope": {"allowedActions": "ping"}}`, "scope.allowed_actions", ""},
		{&trustfedv1.ProposeAgreementRequest{}, `{"scope": {"allowed_actions": ["ping", 3]}}`, "scope.allowed_actions", ""},
		{&trustfedv1.ProposeAgreementRequest{}, `{"scope": {"allowedActions": ["ping", tr]}}`, "scope.allowed_actions[1]", ""},
		{&trustfedv1.ProposeAgreementRequest{}, `{"notAfter": "tomorrow"}`, "not_after", "google.protobuf.Timestamp"},
		{&trustfedv1.ProposeAgreementRequest{}, `{"termination": {"minLevel": "NaN"}}`, "termination.min_level", ""},
		{&trustfedv1.ProposeAgreementRequest{}, `[]`, "", ""},
		{&trustfedv1.ProposeAgreementRequest{}, `{"scope": {}} x`, "", ""},
		{&trustfedv1.ProposeAgreementRequest{}, `{"requestId": "a", "requestId": "b"}`, "", ""},
	} {
		md := c.msg.ProtoReflect().Descriptor()
		err := protojson.Unmarshal([]byte(c.body), c.msg)
		require.Error(t, err, c.body)
		field, desc := jsonErrorField(md, []byte(c.body), err)
		require.Equal(t, c.field, field, c.body)
		require.Contains(t, desc, c.desc, c.body)
		require.NotContains(t, desc, "(line", "%s: the position refers to bytes the caller did not send", c.body)
	}
}

// FuzzJSONErrorField: the field search runs on bodies from callers not yet
// authenticated; it never panics, and a field it names comes with a
// description.
func FuzzJSONErrorField(f *testing.F) {
	methods := requestMethods()
	f.Add(uint8(0), []byte(`{"name": ["x"]}`))
	f.Add(uint8(3), []byte(`{"a": {"b": [1, {"c": tru}]}}`))
	f.Add(uint8(5), []byte(`{"scope": {"allowedActions": ["ping", NaN]}}`))
	f.Fuzz(func(t *testing.T, pick uint8, data []byte) {
		req, err := newRequest(methods[int(pick)%len(methods)])
		if err != nil {
			t.Fatal(err)
		}
		md := req.ProtoReflect().Descriptor()
		if err = protojson.Unmarshal(data, req); err == nil {
			return
		}
		field, desc := jsonErrorField(md, data, err)
		if field == "" {
			return
		}
		if desc == "" {
			t.Fatalf("%q: field %s without a description", data, field)
		}
	})
}
