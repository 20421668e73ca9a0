package gateway

import (
	"context"
	"regexp"
	"time"

	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/ids"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Refusals reach the registry's audit log (GATEWAY_REFUSAL entries,
// RegistryService.ReportRefusals): what this gateway refused to accept,
// and the messages its own controls or outbound gate stopped. They are
// queued (never blocking a send or a receive) and sent in batches by Run;
// when the queue is full a refusal is dropped and counted
// (Stats.RefusalsDropped), so a flood of bad envelopes cannot slow the
// gateway down.
const (
	refusalQueue     = 1024
	refusalBatch     = 64 // the registry's limit per call
	refusalFlush     = 500 * time.Millisecond
	maxRefusalDetail = 256
)

// refusalAction is the shape of an action name the registry records.
var refusalAction = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// report queues a refusal for the registry.
func (g *Gateway) report(dir Direction, partner, action string, err error) {
	code := string(CodeOf(err))
	if code == "" {
		return
	}
	detail := err.Error()
	if len(detail) > maxRefusalDetail {
		detail = detail[:maxRefusalDetail]
		for len(detail) > 0 && detail[len(detail)-1]&0xC0 == 0x80 { // not mid-rune
			detail = detail[:len(detail)-1]
		}
		if len(detail) > 0 && detail[len(detail)-1] >= 0xC0 {
			detail = detail[:len(detail)-1]
		}
	}
	if !ids.Organization.Match(partner) {
		partner = "" // what a forged envelope claims is not recorded as an organisation
	}
	if !refusalAction.MatchString(action) {
		action = "" // the same: only a well-formed action name is recorded
	}
	r := &trustfedv1.AuditGatewayRefusal{
		PartnerOrganizationId: partner, Action: action, Direction: dir.String(), Code: code,
		Detail: detail, Time: timestamppb.New(g.now()),
	}
	select {
	case g.refusals <- r:
	default:
		g.stats.refusalsDropped.Add(1)
	}
}

// reportLoop sends queued refusals in batches until ctx ends.
func (g *Gateway) reportLoop(ctx context.Context) {
	t := time.NewTicker(refusalFlush)
	defer t.Stop()
	var batch []*trustfedv1.AuditGatewayRefusal
	flush := func() {
		if len(batch) == 0 {
			return
		}
		req := &trustfedv1.ReportRefusalsRequest{OrganizationId: g.cfg.Organization, Refusals: batch}
		err := g.regs.do(ctx, func(ctx context.Context, c *client.Client) error {
			_, err := c.Registry().ReportRefusals(ctx, req)
			return err
		})
		if err != nil {
			g.stats.refusalsDropped.Add(uint64(len(batch)))
			if ctx.Err() == nil {
				g.log.Warn("refusals not reported to the registry", "refusals", len(batch), "error", err)
			}
		} else {
			g.stats.refusalsReported.Add(uint64(len(batch)))
		}
		batch = nil
	}
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-g.refusals:
			batch = append(batch, r)
			if len(batch) >= refusalBatch {
				flush()
			}
		case <-t.C:
			flush()
		}
	}
}
