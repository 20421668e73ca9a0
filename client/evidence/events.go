package evidence

import (
	"encoding/json"
	"strings"

	"google.golang.org/protobuf/proto"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// E04: cascades and their deliveries.

type cascadeStart struct {
	CascadeID string `json:"cascade_id"`
	// The command entry that started it (same Raft index), when the bundle
	// holds it.
	StartedBySequence *uint64 `json:"started_by_sequence,omitempty"`
	StartedByType     string  `json:"started_by_type,omitempty"`
	// What that command asked for (its payload; an admin change decoded).
	StartedBy json.RawMessage `json:"started_by,omitempty"`
}

// triggerOf renders the payload of the command that started a cascade.
func triggerOf(e *trustfedv1.AuditEntry) json.RawMessage {
	msg, err := commandPayload(e)
	if err != nil {
		return nil
	}
	if p, ok := msg.(*commandv1.ProposeAdminChange); ok {
		var c trustfedv1.AdminChange
		if proto.Unmarshal(p.Change, &c) == nil {
			return pjson(&c)
		}
	}
	return pjson(msg)
}

type deliveryJSON struct {
	CascadeID        string `json:"cascade_id"`
	OrganizationID   string `json:"organization_id"`
	Channel          string `json:"channel,omitempty"`
	DispatchTime     string `json:"dispatch_time,omitempty"`
	FirstAttemptTime string `json:"first_attempt_time,omitempty"`
	LastAttemptTime  string `json:"last_attempt_time,omitempty"`
	Attempts         uint32 `json:"attempts,omitempty"`
	AckTime          string `json:"ack_time,omitempty"`
	EscalateTime     string `json:"escalate_time,omitempty"`
	LastError        string `json:"last_error,omitempty"`
}

func deliveryOf(cascadeID string, d *trustfedv1.Delivery) deliveryJSON {
	ch := ""
	if d.GetChannel() != trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_UNSPECIFIED {
		ch = strings.TrimPrefix(d.GetChannel().String(), "DELIVERY_CHANNEL_")
	}
	return deliveryJSON{
		CascadeID: cascadeID, OrganizationID: d.GetOrganizationId(), Channel: ch,
		DispatchTime: ts(d.GetDispatchTime()), FirstAttemptTime: ts(d.GetFirstAttemptTime()), LastAttemptTime: ts(d.GetLastAttemptTime()),
		Attempts: d.GetAttempts(), AckTime: ts(d.GetAckTime()), EscalateTime: ts(d.GetEscalateTime()), LastError: d.GetLastError(),
	}
}

type cascadeRecord struct {
	entryRef
	Cascade    *cascadeStart  `json:"cascade,omitempty"`
	Deliveries []deliveryJSON `json:"deliveries,omitempty"`
}

// cascadeSummary is a cascade's per-partner timestamps as the delivery
// records in the bundle report them (times once set stay, as the registry
// merges them).
type cascadeSummary struct {
	StartedSequence *uint64                  `json:"started_sequence,omitempty"`
	StartedAt       string                   `json:"started_at,omitempty"`
	Partners        map[string]*deliveryJSON `json:"partners"`
}

func (c *cascadeSummary) merge(d deliveryJSON) {
	p, ok := c.Partners[d.OrganizationID]
	if !ok {
		c.Partners[d.OrganizationID] = &d
		return
	}
	setOnce := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	setOnce(&p.DispatchTime, d.DispatchTime)
	setOnce(&p.FirstAttemptTime, d.FirstAttemptTime)
	setOnce(&p.AckTime, d.AckTime)
	setOnce(&p.EscalateTime, d.EscalateTime)
	if d.LastAttemptTime != "" {
		p.LastAttemptTime = d.LastAttemptTime
	}
	if d.Attempts > p.Attempts {
		p.Attempts = d.Attempts
	}
	if d.Channel != "" {
		p.Channel = d.Channel
	}
	if d.LastError != "" {
		p.LastError = d.LastError
	}
}

// E07: refused attempts.

type authFailureJSON struct {
	Method   string `json:"method"`
	Code     string `json:"code"`
	Reason   string `json:"reason,omitempty"`
	Identity string `json:"identity,omitempty"`
	Peer     string `json:"peer,omitempty"`
	NodeID   string `json:"node_id,omitempty"`
}

type refusedRecord struct {
	entryRef
	AuthFailure   *authFailureJSON `json:"auth_failure,omitempty"`
	CommandSHA256 string           `json:"command_sha256,omitempty"`
}

func refusedOf(e *trustfedv1.AuditEntry) refusedRecord {
	r := refusedRecord{entryRef: refOf(e), CommandSHA256: hexOf(e.CommandSha256)}
	if af := e.GetAuthFailure(); af != nil {
		r.AuthFailure = &authFailureJSON{Method: af.Method, Code: af.Code, Reason: af.Reason, Identity: af.Identity, Peer: af.Peer, NodeID: af.NodeId}
	}
	return r
}
