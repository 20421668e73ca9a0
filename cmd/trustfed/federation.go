package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

const day = 24 * time.Hour

// maxSerialLen bounds a passport serial (attestation: 1..128 printable
// ASCII characters without spaces).
const maxSerialLen = 128

func newFederationCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("federation", "Federation-wide settings")
	policy := newGroupCmd("policy", "Read and change the federation policy (onboarding, freshness, admin quorum)")
	policy.AddCommand(newFederationPolicyGetCmd(a), newFederationPolicySetCmd(a))
	cmd.AddCommand(policy)
	return cmd
}

func newFederationPolicyGetCmd(a *app) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "get",
		Short: "Show the federation policy",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &trustfedv1.GetFederationPolicyRequest{Consistency: readConsistency(stale)}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Admin().GetFederationPolicy(ctx, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeFederationPolicy(w, resp.GetPolicy(), resp.GetMeta()) })
			})
		},
	}
	addStaleFlag(cmd, &stale)
	return cmd
}

func newFederationPolicySetCmd(a *app) *cobra.Command {
	var capLevel, period, freshness, reason, compliance string
	var approvals uint32
	cmd := &cobra.Command{
		Use:   "set [--onboarding-cap N] [--onboarding-period 30d] [--freshness-window 5m] [--admin-approvals N] [--compliance hipaa,soc2,gdpr]",
		Short: "Change the federation policy (an admin change)",
		Long: `Change the federation policy. A member's level is capped at the onboarding
cap level (0..4 or its name) for the onboarding period after its approval
(a Go duration such as 720h, or a number of days such as 30d; 0 ends
onboarding at approval). Changing the period applies to members approved
afterwards; changing the cap applies at the next decision. Decisions stay
valid for the freshness window (1s..10m). --admin-approvals is how many
distinct admins must approve an admin change (1..10, at most the number of
active admins). --compliance sets the audit log's compliance modes (a
comma-separated list, "" for none); in GDPR mode personal identifiers are
written to the log as keyed pseudonyms from then on (docs/audit.md).

` + adminChangesLong,
		Example: "  trustfed federation policy set --onboarding-cap 4\n  trustfed federation policy set --onboarding-period 14d --admin-approvals 2",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			changed := cmd.Flags().Changed
			pc, err := federationPolicyChange(changed("onboarding-cap"), capLevel, changed("onboarding-period"), period)
			if err != nil {
				return err
			}
			if changed("freshness-window") {
				d, err := time.ParseDuration(freshness)
				if err != nil {
					return usageErrorf("--freshness-window %q: want a Go duration such as 5m", freshness)
				}
				pc.FreshnessWindow = durationpb.New(d)
			}
			if changed("admin-approvals") {
				pc.AdminApprovalsRequired = proto.Uint32(approvals)
			}
			if changed("compliance") {
				pc.ComplianceModes = &trustfedv1.ComplianceModes{}
				for _, name := range strings.Split(compliance, ",") {
					if name = strings.TrimSpace(name); name == "" {
						continue
					}
					m, ok := trustfedv1.ComplianceMode_value["COMPLIANCE_MODE_"+strings.ToUpper(name)]
					if !ok {
						return usageErrorf("--compliance %q: want hipaa, soc2 or gdpr", name)
					}
					pc.ComplianceModes.Modes = append(pc.ComplianceModes.Modes, trustfedv1.ComplianceMode(m))
				}
			}
			if pc.OnboardingCapLevel == nil && pc.OnboardingPeriod == nil && pc.FreshnessWindow == nil && pc.AdminApprovalsRequired == nil && pc.ComplianceModes == nil {
				return usageErrorf("nothing to change: give --onboarding-cap, --onboarding-period, --freshness-window, --admin-approvals or --compliance")
			}
			if err := state.ValidatePolicyChange("", pc); err != nil {
				return usageErrorf("%v", err) // the registry's own bounds, checked before anything is signed
			}
			why, err := changeReason(reason, "change the federation policy: "+describePolicyChange(pc))
			if err != nil {
				return err
			}
			change := &trustfedv1.AdminChange{Reason: why, Change: &trustfedv1.AdminChange_UpdateFederationPolicy{UpdateFederationPolicy: pc}}
			return a.proposeChange(cmd, change, func(ctx context.Context, c *client.Client, w io.Writer) error {
				resp, err := c.Admin().GetFederationPolicy(ctx, &trustfedv1.GetFederationPolicyRequest{})
				if err != nil {
					return err
				}
				return writeFederationPolicy(w, resp.GetPolicy(), nil)
			})
		},
	}
	cmd.Flags().StringVar(&capLevel, "onboarding-cap", "", "level cap of members during onboarding, 0..4 or its name")
	cmd.Flags().StringVar(&period, "onboarding-period", "", "length of onboarding after approval, e.g. 30d or 720h")
	cmd.Flags().StringVar(&freshness, "freshness-window", "", "how long a decision stays valid, 1s..10m")
	cmd.Flags().Uint32Var(&approvals, "admin-approvals", 0, "distinct admin approvals an admin change needs, 1..10")
	cmd.Flags().StringVar(&compliance, "compliance", "", "audit compliance modes, e.g. hipaa,gdpr (\"\" for none)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded; default: a description of the change)")
	return cmd
}

// federationPolicyChange validates the onboarding arguments of
// "federation policy set".
func federationPolicyChange(capSet bool, capLevel string, periodSet bool, period string) (*trustfedv1.FederationPolicyChange, error) {
	pc := &trustfedv1.FederationPolicyChange{}
	if capSet {
		l, err := parseLevel(capLevel)
		if err != nil {
			return nil, usageErrorf("--onboarding-cap: %w", err)
		}
		pc.OnboardingCapLevel = proto.Uint32(l)
	}
	if periodSet {
		d, err := parseDays("--onboarding-period", period)
		if err != nil {
			return nil, err
		}
		pc.OnboardingPeriod = durationpb.New(d)
	}
	return pc, nil
}

// passportRevokeCmd is "passport revoke SERIAL --reason R". It is built
// without the app (the passport group is), so it reads the global flags
// from the parsed command line.
func passportRevokeCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke SERIAL --reason REASON",
		Short: "Revoke a passport serial everywhere (its holder's attested level drops to 0; an admin change)",
		Long: `Revoke a governance passport by its serial. From the next decision on, the
passport attests nothing, wherever it was submitted; the organisation holding
it needs a new passport ("trustfed org passport") to get its level back.`,
		Example: `  trustfed passport revoke 3f9c2a7b1d0e4f65 --reason "assessment withdrawn"`,
		Args:    exactArgs("SERIAL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			change, err := passportRevokeChange(args[0], reason)
			if err != nil {
				return err
			}
			a, err := appFromFlags(cmd)
			if err != nil {
				return err
			}
			return a.proposeChange(cmd, change, nil)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the passport is revoked (required, recorded)")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

// passportRevokeChange validates the arguments of "passport revoke".
func passportRevokeChange(serial, reason string) (*trustfedv1.AdminChange, error) {
	if err := validateSerial(serial); err != nil {
		return nil, err
	}
	if err := validateReason(reason); err != nil {
		return nil, err
	}
	return &trustfedv1.AdminChange{Reason: reason, Change: &trustfedv1.AdminChange_RevokePassport{RevokePassport: &trustfedv1.RevokePassportChange{Serial: serial}}}, nil
}

// validateSerial checks a passport serial: 1..128 printable ASCII
// characters without spaces.
func validateSerial(serial string) error {
	if serial == "" || len(serial) > maxSerialLen {
		return usageErrorf("passport serial must be 1..%d characters", maxSerialLen)
	}
	for i := 0; i < len(serial); i++ {
		if c := serial[i]; c < '!' || c > '~' {
			return usageErrorf("passport serial %q: only printable ASCII characters without spaces", serial)
		}
	}
	return nil
}

// validateReason checks a --reason flag: not blank.
func validateReason(reason string) error {
	if strings.TrimSpace(reason) == "" {
		return usageErrorf("--reason is empty")
	}
	return nil
}

// parseDays reads a non-negative duration given to flag: a Go duration
// (720h) or a whole number of days (30d).
func parseDays(flag, s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 32)
		if err != nil || days > uint64(math.MaxInt64/int64(day)) {
			return 0, usageErrorf("%s %q: want a number of days such as 30d, or a Go duration such as 720h", flag, s)
		}
		return time.Duration(days) * day, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, usageErrorf("%s %q: want a number of days such as 30d, or a Go duration such as 720h", flag, s)
	}
	if d < 0 {
		return 0, usageErrorf("%s %q must not be negative", flag, s)
	}
	return d, nil
}

// formatDays renders a duration, with its number of days when it is a
// whole number of days: "720h0m0s (30d)".
func formatDays(d *durationpb.Duration) string {
	s := formatDuration(d)
	if d == nil || d.CheckValid() != nil {
		return s
	}
	if v := d.AsDuration(); v > 0 && v%day == 0 {
		s += fmt.Sprintf(" (%dd)", v/day)
	}
	return s
}

// writeFederationPolicy prints the federation policy as key-value rows.
func writeFederationPolicy(w io.Writer, p *trustfedv1.FederationPolicy, m *trustfedv1.ReadMeta) error {
	t := newTable(w)
	t.row("Onboarding cap level:", formatLevel(p.GetOnboardingCapLevel()))
	t.row("Onboarding period:", formatDays(p.GetOnboardingPeriod()))
	t.row("Freshness window:", formatDuration(p.GetFreshnessWindow()))
	t.row("Admin approvals required:", fmt.Sprint(p.GetAdminApprovalsRequired()))
	t.row("Audit compliance modes:", complianceNames(p.GetComplianceModes()))
	t.row("Modify index:", fmt.Sprint(p.GetModifyIndex()))
	writeMetaRows(t, m)
	return t.flush()
}

// appFromFlags returns the app of a command assembled without one (the
// issuer and passport groups are): the global flags as parsed on the
// command line, with their environment defaults, and the command's output.
func appFromFlags(cmd *cobra.Command) (*app, error) {
	a := newApp(cmd.OutOrStdout(), cmd.ErrOrStderr(), nil)
	f := cmd.Flags()
	var err error
	for name, dst := range map[string]*string{
		"addr": &a.addr, "token": &a.token, "token-file": &a.tokenFile, "cacert": &a.cacert, "output": &a.output, "admin-key": &a.adminKey,
	} {
		if *dst, err = f.GetString(name); err != nil {
			return nil, fmt.Errorf("global flag --%s: %w", name, err)
		}
	}
	if a.timeout, err = f.GetDuration("timeout"); err != nil {
		return nil, fmt.Errorf("global flag --timeout: %w", err)
	}
	if a.changeTTL, err = f.GetDuration("change-ttl"); err != nil {
		return nil, fmt.Errorf("global flag --change-ttl: %w", err)
	}
	return a, nil
}
