package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/ids"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// envAdminKey names the admin approval key file.
const envAdminKey = "TRUSTFED_ADMIN_KEY"

// maxChangeTTL mirrors the registry's bound on how long a change may wait.
const maxChangeTTL = 7 * 24 * time.Hour

const adminChangesLong = `Sensitive changes (trust levels, suspension and revocation, onboarding
overrides, issuer accreditation, passport revocation, the federation policy,
admins themselves) are admin changes: the command signs the change with your
admin key (--admin-key or TRUSTFED_ADMIN_KEY) and proposes it; it takes
effect when as many distinct admins as the federation policy requires
(admin_approvals_required, default 2; the dev server: 1) have signed it.
Other admins approve with "trustfed admin approve CHANGE_ID". Every registry
node checks every signature before applying the change.`

// loadAdminKey reads the admin approval key.
func (a *app) loadAdminKey() (ed25519.PrivateKey, error) {
	if a.adminKey == "" {
		return nil, usageErrorf("this is an admin change: it needs your admin key (--admin-key FILE or %s)", envAdminKey)
	}
	key, err := attestation.LoadPrivateKey(a.adminKey)
	if err != nil {
		return nil, fmt.Errorf("admin key: %w", err)
	}
	return key, nil
}

// proposeChange signs and proposes an admin change, prints the change
// record and, once it is applied, what show prints (the changed object).
func (a *app) proposeChange(cmd *cobra.Command, change *trustfedv1.AdminChange, show func(ctx context.Context, c *client.Client, w io.Writer) error) error {
	key, err := a.loadAdminKey()
	if err != nil {
		return err
	}
	if a.changeTTL <= 0 || a.changeTTL > maxChangeTTL {
		return usageErrorf("--change-ttl must be within (0, %s]", maxChangeTTL)
	}
	return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
		rec, err := c.ProposeAdminChange(ctx, key, change, a.changeTTL)
		if err != nil {
			return err
		}
		return a.printChange(ctx, c, rec, show)
	})
}

// printChange prints a change record, and the changed object once applied.
func (a *app) printChange(ctx context.Context, c *client.Client, rec *trustfedv1.AdminChangeRecord, show func(ctx context.Context, c *client.Client, w io.Writer) error) error {
	return a.print(rec, func(w io.Writer) error {
		if err := writeAdminChange(w, rec); err != nil {
			return err
		}
		if rec.GetStatus() != trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED {
			return nil
		}
		if show != nil {
			fmt.Fprintln(w)
			if err := show(ctx, c, w); err != nil {
				return err
			}
		}
		return showCascades(ctx, c, w, rec.GetCascadeIds())
	})
}

// showCascades names the cascades an applied change started (a revocation's,
// say) and how to follow each: whoever applies the change, the proposer on
// a quorum of one or the admin whose approval completes the quorum, learns
// the id there and then.
func showCascades(ctx context.Context, c *client.Client, w io.Writer, ids []string) error {
	for i, id := range ids {
		resp, err := c.Cascades().GetCascade(ctx, &trustfedv1.GetCascadeRequest{CascadeId: id})
		if err != nil {
			return fmt.Errorf("cascade %s: %w", id, err)
		}
		if i == 0 {
			fmt.Fprintln(w)
		}
		if _, err := fmt.Fprintf(w, "Cascade %s notifies %d partner(s): trustfed revocation status %s\n", id, len(resp.GetCascade().GetDeliveries()), id); err != nil {
			return err
		}
	}
	return nil
}

// showOrganization prints an organisation after a change applied to it.
func showOrganization(id string) func(ctx context.Context, c *client.Client, w io.Writer) error {
	return func(ctx context.Context, c *client.Client, w io.Writer) error {
		resp, err := c.Registry().GetOrganization(ctx, &trustfedv1.GetOrganizationRequest{OrganizationId: id})
		if err != nil {
			return err
		}
		return writeOrganization(w, resp.GetOrganization(), nil)
	}
}

// changeReason is --reason, or def when the flag was not given.
func changeReason(reason, def string) (string, error) {
	if reason == "" {
		return def, nil
	}
	if err := validateReason(reason); err != nil {
		return "", err
	}
	return reason, nil
}

func newAdminCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("admin", "Federation admins and the admin changes they approve")
	cmd.Long = adminChangesLong
	changes := newGroupCmd("changes", "List and show admin changes")
	changes.AddCommand(newAdminChangesListCmd(a), newAdminChangesGetCmd(a))
	cmd.AddCommand(newAdminAddCmd(a), newAdminRemoveCmd(a), newAdminListCmd(a), newAdminApproveCmd(a), changes)
	return cmd
}

func newAdminAddCmd(a *app) *cobra.Command {
	var name, pubkey, reason string
	cmd := &cobra.Command{
		Use:   "add ID --name NAME --pubkey admin.key.pub",
		Short: "Enrol a federation admin's approval key (an admin change)",
		Long: `Enrol an admin: their ed25519 public key (PKIX PEM, FILE.pub from
"trustfed keygen --out FILE") may then approve admin changes.

A federation without admins enrols its first admin with that admin's own key:
  trustfed admin add alice --name "Alice" --pubkey alice.key.pub --admin-key alice.key
While the federation has fewer admins than admin_approvals_required, every
current admin approves an enrolment.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateAdminID(args[0]); err != nil {
				return err
			}
			if err := validateName(name); err != nil {
				return err
			}
			pemText, err := readPublicKeyPEM(pubkey)
			if err != nil {
				return err
			}
			pub, err := attestation.ParsePublicKeyPEM([]byte(pemText))
			if err != nil {
				return err
			}
			why, err := changeReason(reason, "enrol admin "+args[0])
			if err != nil {
				return err
			}
			change := &trustfedv1.AdminChange{Reason: why, Change: &trustfedv1.AdminChange_AddAdmin{AddAdmin: &trustfedv1.AddAdminChange{AdminId: args[0], Name: name, PublicKey: pub}}}
			return a.proposeChange(cmd, change, nil)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the admin's name (required)")
	cmd.Flags().StringVar(&pubkey, "pubkey", "", "the admin's ed25519 public key, PKIX PEM (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded; default: enrol admin ID)")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("pubkey")
	return cmd
}

func newAdminRemoveCmd(a *app) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "remove ID --reason REASON",
		Short: "Remove an admin: their approvals stop counting, also on pending changes (an admin change)",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateAdminID(args[0]); err != nil {
				return err
			}
			if err := validateReason(reason); err != nil {
				return err
			}
			change := &trustfedv1.AdminChange{Reason: reason, Change: &trustfedv1.AdminChange_RemoveAdmin{RemoveAdmin: &trustfedv1.RemoveAdminChange{AdminId: args[0]}}}
			return a.proposeChange(cmd, change, nil)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required, recorded)")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

func validateAdminID(id string) error {
	if !ids.Organization.Match(id) {
		return usageErrorf("admin id %q is not valid (%s)", id, ids.Organization)
	}
	return nil
}

func newAdminListCmd(a *app) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the federation's admins",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Admin().ListAdmins(ctx, &trustfedv1.ListAdminsRequest{Consistency: readConsistency(stale)})
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error {
					t := newTable(w)
					t.row("ID", "NAME", "STATUS", "KEY", "ADDED")
					for _, ad := range resp.GetAdmins() {
						t.row(ad.GetId(), ad.GetName(), strings.TrimPrefix(ad.GetStatus().String(), "ADMIN_STATUS_"), ad.GetPublicKeyFingerprint(), formatTime(ad.GetAddTime()))
					}
					return t.flush()
				})
			})
		},
	}
	addStaleFlag(cmd, &stale)
	return cmd
}

func newAdminApproveCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "approve CHANGE_ID",
		Short: "Approve a pending admin change with your admin key",
		Long: `Approve a pending admin change: the command fetches the change, shows what it
does, signs its exact bytes with your admin key (--admin-key or
TRUSTFED_ADMIN_KEY) and submits the approval. The approval that completes the
quorum applies the change.`,
		Args: exactArgs("CHANGE_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := state.ValidateAdminChangeID("change id", args[0]); err != nil {
				return usageErrorf("%v", err)
			}
			key, err := a.loadAdminKey()
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				rec, err := c.ApproveAdminChange(ctx, key, args[0])
				if err != nil {
					return err
				}
				return a.printChange(ctx, c, rec, nil)
			})
		},
	}
}

func newAdminChangesListCmd(a *app) *cobra.Command {
	var stale, pending bool
	cmd := &cobra.Command{
		Use:   "list [--pending]",
		Short: "List admin changes",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				all := &trustfedv1.ListAdminChangesResponse{}
				err := collectPages(func(token string) (string, error) {
					resp, err := c.Admin().ListAdminChanges(ctx, &trustfedv1.ListAdminChangesRequest{PendingOnly: pending, PageToken: token, Consistency: readConsistency(stale)})
					if err != nil {
						return "", err
					}
					all.Changes = append(all.Changes, resp.GetChanges()...)
					all.Meta = resp.GetMeta()
					return resp.GetNextPageToken(), nil
				})
				if err != nil {
					return err
				}
				return a.print(all, func(w io.Writer) error {
					t := newTable(w)
					t.row("ID", "STATUS", "APPROVALS", "CHANGE", "PROPOSED")
					for _, rec := range all.GetChanges() {
						t.row(rec.GetId(), changeStatus(rec), approvalsSummary(rec), describeChange(rec.GetContent()), formatTime(rec.GetProposeTime()))
					}
					return t.flush()
				})
			})
		},
	}
	addStaleFlag(cmd, &stale)
	cmd.Flags().BoolVar(&pending, "pending", false, "only changes waiting for approvals")
	return cmd
}

func newAdminChangesGetCmd(a *app) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "get CHANGE_ID",
		Short: "Show an admin change and its approvals",
		Args:  exactArgs("CHANGE_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := state.ValidateAdminChangeID("change id", args[0]); err != nil {
				return usageErrorf("%v", err)
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Admin().GetAdminChange(ctx, &trustfedv1.GetAdminChangeRequest{ChangeId: args[0], Consistency: readConsistency(stale)})
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error {
					if err := writeAdminChange(w, resp.GetChange()); err != nil {
						return err
					}
					t := newTable(w)
					writeMetaRows(t, resp.GetMeta())
					return t.flush()
				})
			})
		},
	}
	addStaleFlag(cmd, &stale)
	return cmd
}

func changeStatus(rec *trustfedv1.AdminChangeRecord) string {
	return strings.TrimPrefix(rec.GetStatus().String(), "ADMIN_CHANGE_STATUS_")
}

func approvalsSummary(rec *trustfedv1.AdminChangeRecord) string {
	ids := make([]string, len(rec.GetApprovals()))
	for i, ap := range rec.GetApprovals() {
		ids[i] = ap.GetAdminId()
	}
	return fmt.Sprintf("%d of %d (%s)", len(ids), rec.GetApprovalsRequired(), strings.Join(ids, ", "))
}

// describeChange is a one-line account of what a change does.
func describeChange(c *trustfedv1.AdminChange) string {
	switch ch := c.GetChange().(type) {
	case *trustfedv1.AdminChange_SetDeclaredLevel:
		return fmt.Sprintf("set declared level of %s to %s", ch.SetDeclaredLevel.GetOrganizationId(), formatLevel(ch.SetDeclaredLevel.GetLevel()))
	case *trustfedv1.AdminChange_SetOrganizationStatus:
		return fmt.Sprintf("set status of %s to %s", ch.SetOrganizationStatus.GetOrganizationId(), strings.TrimPrefix(ch.SetOrganizationStatus.GetStatus().String(), "ORGANIZATION_STATUS_"))
	case *trustfedv1.AdminChange_OverrideOnboarding:
		return "lift the onboarding cap of " + ch.OverrideOnboarding.GetOrganizationId()
	case *trustfedv1.AdminChange_AccreditIssuer:
		return fmt.Sprintf("accredit issuer %s (max level %d, key %s)", ch.AccreditIssuer.GetIssuerId(), ch.AccreditIssuer.GetMaxLevel(), attestation.Fingerprint(ch.AccreditIssuer.GetPublicKey()))
	case *trustfedv1.AdminChange_WithdrawIssuer:
		return "withdraw issuer " + ch.WithdrawIssuer.GetIssuerId()
	case *trustfedv1.AdminChange_RevokePassport:
		return "revoke passport " + ch.RevokePassport.GetSerial()
	case *trustfedv1.AdminChange_UpdateFederationPolicy:
		return "change the federation policy: " + describePolicyChange(ch.UpdateFederationPolicy)
	case *trustfedv1.AdminChange_AddAdmin:
		return fmt.Sprintf("enrol admin %s (key %s)", ch.AddAdmin.GetAdminId(), attestation.Fingerprint(ch.AddAdmin.GetPublicKey()))
	case *trustfedv1.AdminChange_RemoveAdmin:
		return "remove admin " + ch.RemoveAdmin.GetAdminId()
	default:
		return "(unknown change)"
	}
}

func describePolicyChange(p *trustfedv1.FederationPolicyChange) string {
	var parts []string
	if p.OnboardingCapLevel != nil {
		parts = append(parts, "onboarding cap "+formatLevel(p.GetOnboardingCapLevel()))
	}
	if p.OnboardingPeriod != nil {
		parts = append(parts, "onboarding period "+formatDays(p.GetOnboardingPeriod()))
	}
	if p.FreshnessWindow != nil {
		parts = append(parts, "freshness window "+formatDuration(p.GetFreshnessWindow()))
	}
	if p.AdminApprovalsRequired != nil {
		parts = append(parts, fmt.Sprintf("admin approvals required %d", p.GetAdminApprovalsRequired()))
	}
	if p.ComplianceModes != nil {
		parts = append(parts, "audit compliance modes "+complianceNames(p.ComplianceModes.Modes))
	}
	return strings.Join(parts, ", ")
}

// writeAdminChange prints a change record; a pending one says how to
// approve it.
func writeAdminChange(w io.Writer, rec *trustfedv1.AdminChangeRecord) error {
	t := newTable(w)
	t.row("Change:", rec.GetId())
	t.row("Status:", changeStatus(rec))
	t.row("What:", describeChange(rec.GetContent()))
	t.row("Reason:", rec.GetContent().GetReason())
	t.row("Approvals:", approvalsSummary(rec))
	t.row("Proposed:", formatTime(rec.GetProposeTime())+" by "+rec.GetProposer())
	t.row("Expires:", formatTime(rec.GetContent().GetExpireTime()))
	if rec.GetStatus() == trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED {
		t.row("Applied:", fmt.Sprintf("%s at index %d", formatTime(rec.GetApplyTime()), rec.GetApplyIndex()))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if rec.GetStatus() == trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_PENDING {
		missing := int(rec.GetApprovalsRequired()) - len(rec.GetApprovals())
		_, err := fmt.Fprintf(w, "\nWaiting for %d more admin approval(s): trustfed admin approve %s\n", max(missing, 1), rec.GetId())
		return err
	}
	return nil
}

// complianceNames is "hipaa,gdpr" ("none" for no mode).
func complianceNames(modes []trustfedv1.ComplianceMode) string {
	if len(modes) == 0 {
		return "none"
	}
	names := make([]string, len(modes))
	for i, m := range modes {
		names[i] = strings.ToLower(strings.TrimPrefix(m.String(), "COMPLIANCE_MODE_"))
	}
	return strings.Join(names, ",")
}
