package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

func newRevocationCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("revocation", "Follow revocation cascades: who was notified, who acknowledged")
	cmd.Aliases = []string{"cascade", "revocations"}
	cmd.AddCommand(newRevocationStatusCmd(a), newRevocationListCmd(a))
	return cmd
}

func newRevocationStatusCmd(a *app) *cobra.Command {
	var noWait bool
	var waitFor time.Duration
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show a cascade; while partners are still unacknowledged, a progress bar until they all are",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := state.ValidateEventID("cascade id", args[0]); err != nil {
				return usageErrorf("%v", err)
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				get := func() (*trustfedv1.GetCascadeResponse, error) {
					return c.Cascades().GetCascade(ctx, &trustfedv1.GetCascadeRequest{CascadeId: args[0]})
				}
				resp, err := get()
				if err != nil {
					return err
				}
				if !noWait && resp.GetCascade().GetCompleteTime() == nil {
					if resp, err = waitCascade(ctx, a.stderr, resp, waitFor, get); err != nil {
						return err
					}
				}
				if err := a.print(resp, func(w io.Writer) error { return writeCascade(w, resp.GetCascade(), resp.GetMeta()) }); err != nil {
					return err
				}
				if cs := resp.GetCascade(); !noWait && cs.GetCompleteTime() == nil {
					total := len(cs.GetDeliveries())
					return &codeError{code: exitTimeout, err: fmt.Errorf("cascade %s: still %d of %d partner(s) unacknowledged after --wait-timeout %s",
						args[0], total-int(cs.GetAcked()), total, waitFor)}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "print the cascade as it is now, without waiting for the acknowledgements")
	cmd.Flags().DurationVar(&waitFor, "wait-timeout", 10*time.Minute, "give up waiting after this long: the cascade is printed as it is and the command exits 4")
	return cmd
}

// waitCascade polls until the cascade completes or waitFor passes, drawing a
// progress bar on stderr when stderr is a terminal; it returns the last
// answer either way.
func waitCascade(ctx context.Context, stderr io.Writer, resp *trustfedv1.GetCascadeResponse, waitFor time.Duration,
	get func() (*trustfedv1.GetCascadeResponse, error)) (*trustfedv1.GetCascadeResponse, error) {
	tty := isTerminal(stderr)
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for resp.GetCascade().GetCompleteTime() == nil {
		if tty {
			drawProgress(stderr, resp.GetCascade())
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			if tty {
				fmt.Fprintln(stderr)
			}
			return resp, nil // the caller reports the timeout
		case <-tick.C:
		}
		next, err := get()
		if err != nil {
			return nil, err
		}
		resp = next
	}
	if tty {
		drawProgress(stderr, resp.GetCascade())
		fmt.Fprintln(stderr)
	}
	return resp, nil
}

// drawProgress redraws one progress line: "[#####-----] 25/50 acked  3.2s".
func drawProgress(w io.Writer, c *trustfedv1.Cascade) {
	const width = 30
	total := len(c.GetDeliveries())
	filled := width
	if total > 0 {
		filled = int(c.GetAcked()) * width / total
	}
	end := time.Now()
	if c.GetCompleteTime() != nil {
		end = c.GetCompleteTime().AsTime()
	}
	fmt.Fprintf(w, "\r[%s%s] %d/%d acked  %s ", strings.Repeat("#", filled), strings.Repeat("-", width-filled), c.GetAcked(), total,
		end.Sub(c.GetStartTime().AsTime()).Round(100*time.Millisecond))
}

func newRevocationListCmd(a *app) *cobra.Command {
	var org string
	var stale bool
	cmd := &cobra.Command{
		Use:   "list [--org ID]",
		Short: "List cascades (revocations, suspensions, level changes, agreement and session ends)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if org != "" {
				if err := validateOrgID("--org", org); err != nil {
					return err
				}
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				all := &trustfedv1.ListCascadesResponse{}
				err := collectPages(func(token string) (string, error) {
					resp, err := c.Cascades().ListCascades(ctx, &trustfedv1.ListCascadesRequest{OrganizationId: org, PageToken: token, Consistency: readConsistency(stale)})
					if err != nil {
						return "", err
					}
					all.Cascades = append(all.Cascades, resp.GetCascades()...)
					all.Meta = resp.GetMeta()
					return resp.GetNextPageToken(), nil
				})
				if err != nil {
					return err
				}
				return a.print(all, func(w io.Writer) error {
					t := newTable(w)
					t.row("ID", "KIND", "ORGANIZATION", "ACKED", "STARTED", "COMPLETE")
					for _, cs := range all.GetCascades() {
						t.row(cs.GetId(), eventKind(cs.GetEvent().GetKind()), cs.GetEvent().GetOrganizationId(),
							fmt.Sprintf("%d/%d", cs.GetAcked(), len(cs.GetDeliveries())), formatTime(cs.GetStartTime()), formatTime(cs.GetCompleteTime()))
					}
					return t.flush()
				})
			})
		},
	}
	cmd.Flags().StringVar(&org, "org", "", "only cascades about this organisation")
	addStaleFlag(cmd, &stale)
	return cmd
}

func eventKind(k trustfedv1.EventKind) string { return strings.TrimPrefix(k.String(), "EVENT_KIND_") }

// writeCascade prints a cascade and one row per partner.
func writeCascade(w io.Writer, c *trustfedv1.Cascade, m *trustfedv1.ReadMeta) error {
	t := newTable(w)
	t.row("Cascade:", c.GetId())
	t.row("Event:", eventKind(c.GetEvent().GetKind())+" of "+c.GetEvent().GetOrganizationId())
	t.row("Reason:", c.GetEvent().GetReason())
	t.row("Committed:", fmt.Sprintf("%s at index %d", formatTime(c.GetStartTime()), c.GetEvent().GetIndex()))
	t.row("Acknowledged:", fmt.Sprintf("%d of %d", c.GetAcked(), len(c.GetDeliveries())))
	if c.GetCompleteTime() != nil {
		t.row("Complete:", fmt.Sprintf("%s (%s after commit)", formatTime(c.GetCompleteTime()), c.GetCompleteTime().AsTime().Sub(c.GetStartTime().AsTime())))
	}
	writeMetaRows(t, m)
	if err := t.flush(); err != nil {
		return err
	}
	if len(c.GetDeliveries()) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	t = newTable(w)
	t.row("PARTNER", "CHANNEL", "ATTEMPTS", "FIRST ATTEMPT", "ACKED", "ESCALATED", "LAST ERROR")
	for _, d := range c.GetDeliveries() {
		ch := strings.TrimPrefix(d.GetChannel().String(), "DELIVERY_CHANNEL_")
		if d.GetAckTime() == nil {
			ch = "-"
		}
		t.row(d.GetOrganizationId(), ch, fmt.Sprint(d.GetAttempts()), formatTime(d.GetFirstAttemptTime()), formatTime(d.GetAckTime()),
			formatTime(d.GetEscalateTime()), orDash(d.GetLastError()))
	}
	return t.flush()
}

func newOrgGraphCmd(a *app) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "graph ID",
		Short: "Show an organisation's partners (active agreements and open sessions): who a revocation notifies",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateOrgID("organisation id", args[0]); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Cascades().GetOrganizationGraph(ctx, &trustfedv1.GetOrganizationGraphRequest{OrganizationId: args[0], Consistency: readConsistency(stale)})
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error {
					t := newTable(w)
					t.row("PARTNER", "AGREEMENTS", "SESSIONS")
					for _, p := range resp.GetPartners() {
						t.row(p.GetOrganizationId(), orDash(strings.Join(p.GetAgreementIds(), ",")), orDash(strings.Join(p.GetSessionIds(), ",")))
					}
					writeMetaRows(t, resp.GetMeta())
					return t.flush()
				})
			})
		},
	}
	addStaleFlag(cmd, &stale)
	return cmd
}

func newEventsCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("events", "Watch and acknowledge the events addressed to an organisation")
	var org string
	var after uint64
	var ack bool
	watch := &cobra.Command{
		Use:   "watch --org ID [--ack]",
		Short: "Stream the events addressed to an organisation (and acknowledge each with --ack) until interrupted",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateOrgID("--org", org); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				stream, err := c.Cascades().WatchEvents(ctx, &trustfedv1.WatchEventsRequest{OrganizationId: org, AfterIndex: after})
				if err != nil {
					return err
				}
				for {
					msg, err := stream.Recv()
					if err != nil {
						if ctx.Err() != nil {
							return nil
						}
						return err
					}
					ev := msg.GetEvent()
					if err := a.print(ev, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "%s  %s  %s of %s at index %d: %s\n", formatTime(ev.GetTime()), ev.GetId(), eventKind(ev.GetKind()), ev.GetOrganizationId(), ev.GetIndex(), ev.GetReason())
						return err
					}); err != nil {
						return err
					}
					if ack {
						if _, err := c.Cascades().AckEvent(ctx, &trustfedv1.AckEventRequest{EventId: ev.GetId(), OrganizationId: org}); err != nil {
							return err
						}
					}
				}
			})
		},
	}
	watch.Flags().StringVar(&org, "org", "", "the organisation whose events to watch (required)")
	watch.Flags().Uint64Var(&after, "after-index", 0, "only events committed after this Raft index")
	watch.Flags().BoolVar(&ack, "ack", false, "acknowledge each event as it arrives")
	_ = watch.MarkFlagRequired("org")
	cmd.AddCommand(memberCall(watch))
	return cmd
}

func newSessionCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("session", "Interaction sessions between two organisations (edges of the notification graph)")
	var from, to, action, reason, org string
	var ttl time.Duration
	open := &cobra.Command{
		Use:   "open --from A --to B --action X [--ttl 5m]",
		Short: "Open a session after an allowed check",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &trustfedv1.OpenSessionRequest{FromOrganizationId: from, ToOrganizationId: to, Action: action, Ttl: durationpb.New(ttl), RequestId: client.NewRequestID()}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, c.Cascades().OpenSession, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeSession(w, resp.GetSession()) })
			})
		},
	}
	open.Flags().StringVar(&from, "from", "", "the organisation opening the session")
	open.Flags().StringVar(&to, "to", "", "the counterparty")
	open.Flags().StringVar(&action, "action", "", "the action the session is for")
	open.Flags().DurationVar(&ttl, "ttl", 5*time.Minute, "expires unless heartbeated within this, 1s..24h")
	closeCmd := &cobra.Command{
		Use:   "close ID --org O --reason R",
		Short: "Close a session (the other party is notified)",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &trustfedv1.CloseSessionRequest{SessionId: args[0], OrganizationId: org, Reason: reason, RequestId: client.NewRequestID()}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, c.Cascades().CloseSession, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeSession(w, resp.GetSession()) })
			})
		},
	}
	closeCmd.Flags().StringVar(&org, "org", "", "the party closing it")
	closeCmd.Flags().StringVar(&reason, "reason", "", "why (recorded)")
	heartbeat := &cobra.Command{
		Use:   "heartbeat ID --org O",
		Short: "Extend an open session by its TTL",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &trustfedv1.HeartbeatSessionRequest{SessionId: args[0], OrganizationId: org, RequestId: client.NewRequestID()}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, c.Cascades().HeartbeatSession, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeSession(w, resp.GetSession()) })
			})
		},
	}
	heartbeat.Flags().StringVar(&org, "org", "", "the party heartbeating")
	cmd.AddCommand(memberCall(open), memberCall(heartbeat), memberCall(closeCmd))
	return cmd
}

func writeSession(w io.Writer, s *trustfedv1.Session) error {
	t := newTable(w)
	t.row("Session:", s.GetId())
	t.row("Between:", s.GetFromOrganizationId()+" -> "+s.GetToOrganizationId()+" ("+s.GetAction()+")")
	t.row("Status:", strings.TrimPrefix(s.GetStatus().String(), "SESSION_STATUS_"))
	t.row("Agreement:", s.GetAgreementId())
	t.row("Expires:", formatTime(s.GetExpireTime()))
	return t.flush()
}
