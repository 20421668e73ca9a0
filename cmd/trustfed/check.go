package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

const checkLong = `Ask the registry whether an agent of organisation --from may perform --action
with an agent of organisation --to. Prints ALLOW or DENY, the levels of both
organisations with what bounds each (declared level, passport, onboarding
cap), the effective level (the lower of the two), the level the action
requires, the agreement that covers the interaction, the reasons for a
denial, and the Raft index the decision was computed at.

check is a member call: it is made by a member node of --from with its member
certificate (--cert/--key or TRUSTFED_CERT/TRUSTFED_KEY), never with an admin
or governance token. To get one: "trustfed member enrol" (as the
organisation), then "trustfed member cert" (as the node).

Exit codes, so that scripts can branch on the decision:
  0  ALLOW
  3  DENY
  1  the check could not be made (server or connection error)
  2  usage error`

func newCheckCmd(a *app) *cobra.Command {
	var from, to, action, dataTypes, authorization string
	var value int64
	var stale, verify, allowSingle bool
	cmd := &cobra.Command{
		Use:     "check --from ORG --to ORG --action ACTION",
		Short:   "Decide whether an interaction between two organisations is allowed (exit 0 ALLOW, 3 DENY)",
		Long:    checkLong,
		Example: "  trustfed --cert gw-1.crt --key gw-1.key check --from acme-bank --to globex --action task_send && echo allowed",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := interactionRequest(from, to, action, dataTypes, value, stale)
			if err != nil {
				return err
			}
			req.AuthorizationId = authorization
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Registry().CheckInteraction(ctx, req)
				if err != nil {
					return err
				}
				if verify {
					keys, err := c.Keys(ctx)
					if err != nil {
						return err
					}
					if _, err := client.VerifyDecisionWith(resp, keys, time.Now(), attestation.VerifyOptions{AllowSingleNode: allowSingle}); err != nil {
						return fmt.Errorf("decision does not verify: %w", err)
					}
					fmt.Fprintln(cmd.ErrOrStderr(), "decision verified:", vouchedBy(resp, keys))
				}
				if err := a.print(resp, func(w io.Writer) error { return writeCheck(w, resp) }); err != nil {
					return err
				}
				return checkExit(resp.GetDecision())
			})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "organisation whose agent initiates the interaction (required)")
	cmd.Flags().StringVar(&to, "to", "", "counterparty organisation (required)")
	cmd.Flags().StringVar(&action, "action", "", `action, e.g. "discovery", "ping", "task_send", "context_share" (required)`)
	cmd.Flags().StringVar(&dataTypes, "data-types", "", "comma-separated PII types the interaction carries, e.g. email,person_name")
	cmd.Flags().Int64Var(&value, "value", 0, "value of the action in minor currency units")
	cmd.Flags().StringVar(&authorization, "authorization", "", "id of a granted dual authorisation for exactly this interaction")
	cmd.Flags().BoolVar(&verify, "verify", false, "verify the decision's quorum certificate with the registry's published node keys")
	cmd.Flags().BoolVar(&allowSingle, "allow-single-node", false, "with --verify: accept a decision signed by one registry node alone (unaudited registries)")
	addStaleFlag(cmd, &stale)
	for _, f := range []string{"from", "to", "action"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return memberCall(cmd)
}

// checkRequest validates the arguments of "check".
func checkRequest(from, to, action string, stale bool) (*trustfedv1.CheckInteractionRequest, error) {
	if err := validateOrgID("--from", from); err != nil {
		return nil, err
	}
	if err := validateOrgID("--to", to); err != nil {
		return nil, err
	}
	if strings.TrimSpace(action) == "" {
		return nil, usageErrorf("--action is empty")
	}
	return &trustfedv1.CheckInteractionRequest{
		FromOrganizationId: from,
		ToOrganizationId:   to,
		Action:             action,
		Consistency:        readConsistency(stale),
	}, nil
}

// interactionRequest builds a check from the interaction flags shared by
// `check` and `authorization request`.
func interactionRequest(from, to, action, dataTypes string, value int64, stale bool) (*trustfedv1.CheckInteractionRequest, error) {
	req, err := checkRequest(from, to, action, stale)
	if err != nil {
		return nil, err
	}
	if req.DataTypes, err = parsePIITypes(dataTypes); err != nil {
		return nil, err
	}
	if value < 0 {
		return nil, usageErrorf("--value must not be negative")
	}
	req.Value = value
	return req, nil
}

// parsePIITypes parses "email,credit_card" into PII types.
func parsePIITypes(s string) ([]trustfedv1.PiiType, error) {
	var out []trustfedv1.PiiType
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		v, ok := trustfedv1.PiiType_value["PII_TYPE_"+strings.ToUpper(name)]
		if !ok || v == 0 {
			return nil, usageErrorf("--data-types: unknown PII type %q", name)
		}
		out = append(out, trustfedv1.PiiType(v))
	}
	return out, nil
}

// checkExit maps a decision to the command's outcome: nil for ALLOW, exit
// code 3 (with nothing more printed) for DENY, an error otherwise.
func checkExit(d trustfedv1.Decision) error {
	switch d {
	case trustfedv1.Decision_DECISION_ALLOW:
		return nil
	case trustfedv1.Decision_DECISION_DENY:
		return &codeError{code: exitDeny}
	default:
		return fmt.Errorf("server returned no decision (%s)", d)
	}
}
