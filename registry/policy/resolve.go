package policy

import (
	"cmp"
	"fmt"
	"slices"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Control categories of a ControlProfile (AG-783), as named in Conflict.Category.
const (
	CategoryDataHandling        = "data_handling"
	CategoryActionAuthorization = "action_authorization"
	CategoryLogging             = "logging"
	CategoryEscalation          = "escalation"
)

// Conflict names a control that no option satisfies for both profiles.
// Category is one of the Category* constants and Field the proto field path,
// e.g. "data_handling.residency_regions". A conflict denies the interaction.
type Conflict struct {
	Category, Field, Reason string
}

// category indexes the four categories of a ControlProfile.
type category int

const (
	catDataHandling category = iota
	catActionAuthorization
	catLogging
	catEscalation
	numCategories
)

var categoryNames = [numCategories]string{CategoryDataHandling, CategoryActionAuthorization, CategoryLogging, CategoryEscalation}

// numLevels is the number of trust levels (0..4), the length of PiiRule.by_level.
const numLevels = int(LevelPrivileged) + 1

// fieldRule is one row of the precedence table: how the values two profiles
// give one field combine into the stricter one.
type fieldRule struct {
	category category
	field    string // proto field path
	rule     string // the rule in words; docs/controls.md carries the same text
	// resolve writes the field of out from a and b, whose category is
	// non-nil, and returns a non-empty reason when no value satisfies both.
	resolve func(out *trustfedv1.ControlProfile, a, b profileView) (conflict string)
}

// profileView is a profile's categories, each replaced by the other
// side's where it states none (Resolve). It is passed by value: a pointer
// handed to the resolve functions of the table would move it to the heap.
type profileView struct {
	DataHandling        *trustfedv1.DataHandling
	ActionAuthorization *trustfedv1.ActionAuthorization
	Logging             *trustfedv1.Logging
	Escalation          *trustfedv1.Escalation
}

// precedence is the most-restrictive precedence table (AG-783 TC3), in the
// order the fields are resolved and conflicts are reported. docs/controls.md
// shows the same table; TestPrecedenceTableDocumented keeps them in step.
var precedence = []fieldRule{
	{catDataHandling, "data_handling.pii_rules",
		"per PII type and level: BLOCK > REDACT > HASH > PASS; a type or level one side leaves out (or UNSPECIFIED) takes the other side's action, PASS when neither states one; rules sorted by type",
		resolvePIIRules},
	{catDataHandling, "data_handling.retention_days",
		"shorter wins; 0 (not retained) is the shortest",
		func(o *trustfedv1.ControlProfile, a, b profileView) string {
			o.DataHandling.RetentionDays = min(a.DataHandling.RetentionDays, b.DataHandling.RetentionDays)
			return ""
		}},
	{catDataHandling, "data_handling.residency_regions",
		"intersection, sorted; empty = no restriction; both restrict and nothing is common → conflict",
		func(o *trustfedv1.ControlProfile, a, b profileView) string {
			var disjoint bool
			o.DataHandling.ResidencyRegions, disjoint = intersectRestrictions(a.DataHandling.ResidencyRegions, b.DataHandling.ResidencyRegions)
			if disjoint {
				x, y := canonicalPair(a.DataHandling.ResidencyRegions, b.DataHandling.ResidencyRegions)
				return fmt.Sprintf("no residency region satisfies both profiles: one allows only %v, the other only %v", x, y)
			}
			return ""
		}},
	{catDataHandling, "data_handling.encryption_at_rest_required",
		"either requires → required",
		func(o *trustfedv1.ControlProfile, a, b profileView) string {
			o.DataHandling.EncryptionAtRestRequired = a.DataHandling.EncryptionAtRestRequired || b.DataHandling.EncryptionAtRestRequired
			return ""
		}},
	{catActionAuthorization, "action_authorization.allowed_actions",
		"intersection, sorted; empty = no restriction; both restrict and nothing is common → conflict",
		func(o *trustfedv1.ControlProfile, a, b profileView) string {
			var disjoint bool
			o.ActionAuthorization.AllowedActions, disjoint = intersectRestrictions(a.ActionAuthorization.AllowedActions, b.ActionAuthorization.AllowedActions)
			if disjoint {
				x, y := canonicalPair(a.ActionAuthorization.AllowedActions, b.ActionAuthorization.AllowedActions)
				return fmt.Sprintf("no action is allowed by both profiles: one allows only %v, the other only %v", x, y)
			}
			return ""
		}},
	{catActionAuthorization, "action_authorization.limits",
		"per action the lower max_value wins; an action limited on one side only keeps that limit; sorted by action",
		resolveLimits},
	{catActionAuthorization, "action_authorization.dual_authorization_above_value",
		"the lower non-zero threshold wins; 0 (or negative) = no threshold",
		func(o *trustfedv1.ControlProfile, a, b profileView) string {
			o.ActionAuthorization.DualAuthorizationAboveValue = lowerThreshold(a.ActionAuthorization.DualAuthorizationAboveValue, b.ActionAuthorization.DualAuthorizationAboveValue)
			return ""
		}},
	{catActionAuthorization, "action_authorization.dual_authorization_always",
		"either requires → required",
		func(o *trustfedv1.ControlProfile, a, b profileView) string {
			o.ActionAuthorization.DualAuthorizationAlways = a.ActionAuthorization.DualAuthorizationAlways || b.ActionAuthorization.DualAuthorizationAlways
			return ""
		}},
	{catLogging, "logging.detail",
		"higher wins: FULL > SUMMARY > NONE; UNSPECIFIED states nothing",
		func(o *trustfedv1.ControlProfile, a, b profileView) string {
			o.Logging.Detail = max(normLogDetail(a.Logging.Detail), normLogDetail(b.Logging.Detail))
			return ""
		}},
	{catLogging, "logging.audit_retention_years",
		"longer wins",
		func(o *trustfedv1.ControlProfile, a, b profileView) string {
			o.Logging.AuditRetentionYears = max(a.Logging.AuditRetentionYears, b.Logging.AuditRetentionYears)
			return ""
		}},
	{catEscalation, "escalation.max_escalation_delay",
		"shorter wins; unset states nothing",
		func(o *trustfedv1.ControlProfile, a, b profileView) string {
			o.Escalation.MaxEscalationDelay = shorterDuration(a.Escalation.MaxEscalationDelay, b.Escalation.MaxEscalationDelay)
			return ""
		}},
	{catEscalation, "escalation.human_in_the_loop",
		"either requires → required",
		func(o *trustfedv1.ControlProfile, a, b profileView) string {
			o.Escalation.HumanInTheLoop = a.Escalation.HumanInTheLoop || b.Escalation.HumanInTheLoop
			return ""
		}},
	{catEscalation, "escalation.incident_notification_deadline",
		"shorter wins; unset states nothing",
		func(o *trustfedv1.ControlProfile, a, b profileView) string {
			o.Escalation.IncidentNotificationDeadline = shorterDuration(a.Escalation.IncidentNotificationDeadline, b.Escalation.IncidentNotificationDeadline)
			return ""
		}},
}

// Resolve returns the strictest combination of two control profiles (AG-783
// TC3) and every conflict, in precedence-table order.
//
// A nil profile or a nil category states nothing: the other side's category
// applies alone (normalized as below); a category neither side states stays
// nil. Resolve is pure and deterministic: it never modifies or aliases its
// inputs, Resolve(a, b) equals Resolve(b, a), and Resolve(a, a) is a in
// normal form (PII rules merged per type and sorted, five levels each, no
// UNSPECIFIED action; region, action and limit lists sorted and without
// duplicates; unknown enum values read as the strictest known value).
//
// When there are conflicts the returned profile must not be used to allow
// anything: a conflicting list field is left empty, which on its own would
// mean "no restriction". The conflicts are what deny the interaction.
func Resolve(a, b *trustfedv1.ControlProfile) (*trustfedv1.ControlProfile, []Conflict) {
	var va, vb profileView // a nil category replaced by the other side's
	var present [numCategories]bool
	va.DataHandling, vb.DataHandling, present[catDataHandling] = either(a.GetDataHandling(), b.GetDataHandling())
	va.ActionAuthorization, vb.ActionAuthorization, present[catActionAuthorization] = either(a.GetActionAuthorization(), b.GetActionAuthorization())
	va.Logging, vb.Logging, present[catLogging] = either(a.GetLogging(), b.GetLogging())
	va.Escalation, vb.Escalation, present[catEscalation] = either(a.GetEscalation(), b.GetEscalation())

	// The profile and its categories in one allocation (this runs for
	// every check).
	m := &struct {
		cp trustfedv1.ControlProfile
		dh trustfedv1.DataHandling
		aa trustfedv1.ActionAuthorization
		lg trustfedv1.Logging
		es trustfedv1.Escalation
	}{}
	out := &m.cp
	if present[catDataHandling] {
		out.DataHandling = &m.dh
	}
	if present[catActionAuthorization] {
		out.ActionAuthorization = &m.aa
	}
	if present[catLogging] {
		out.Logging = &m.lg
	}
	if present[catEscalation] {
		out.Escalation = &m.es
	}
	var conflicts []Conflict
	for i := range precedence {
		r := &precedence[i]
		if !present[r.category] {
			continue
		}
		if reason := r.resolve(out, va, vb); reason != "" {
			conflicts = append(conflicts, Conflict{Category: categoryNames[r.category], Field: r.field, Reason: reason})
		}
	}
	return out, conflicts
}

// either returns both categories with a missing one replaced by the other,
// and whether any side states the category.
func either[T any](x, y *T) (*T, *T, bool) {
	if x == nil {
		x = y
	}
	if y == nil {
		y = x
	}
	return x, y, x != nil
}

// normPIIAction reads an unknown PII action as BLOCK (fail closed).
func normPIIAction(v trustfedv1.PiiAction) trustfedv1.PiiAction {
	if v < trustfedv1.PiiAction_PII_ACTION_UNSPECIFIED || v > trustfedv1.PiiAction_PII_ACTION_BLOCK {
		return trustfedv1.PiiAction_PII_ACTION_BLOCK
	}
	return v
}

// normLogDetail reads an unknown log detail as FULL (fail closed).
func normLogDetail(v trustfedv1.LogDetail) trustfedv1.LogDetail {
	if v < trustfedv1.LogDetail_LOG_DETAIL_UNSPECIFIED || v > trustfedv1.LogDetail_LOG_DETAIL_FULL {
		return trustfedv1.LogDetail_LOG_DETAIL_FULL
	}
	return v
}

// resolvePIIRules merges the PII rules of both sides per type, taking the
// stricter action at every level.
func resolvePIIRules(o *trustfedv1.ControlProfile, a, b profileView) string {
	ra, rb := a.DataHandling.PiiRules, b.DataHandling.PiiRules
	if len(ra)+len(rb) == 0 {
		return ""
	}
	all := make([]*trustfedv1.PiiRule, 0, len(ra)+len(rb))
	for _, r := range ra {
		if r != nil {
			all = append(all, r)
		}
	}
	for _, r := range rb {
		if r != nil {
			all = append(all, r)
		}
	}
	// Merging is a maximum, so the order within one type does not matter.
	slices.SortFunc(all, func(x, y *trustfedv1.PiiRule) int { return cmp.Compare(x.Type, y.Type) })
	// One backing array for every output rule's levels.
	groups, width := 0, 0
	for i, r := range all {
		if i == 0 || r.Type != all[i-1].Type {
			groups++
		}
		width = max(width, len(r.ByLevel))
	}
	width = max(width, numLevels)
	levels := make([]trustfedv1.PiiAction, groups*width)
	rules := make([]trustfedv1.PiiRule, groups) // one allocation for every output rule too
	out := make([]*trustfedv1.PiiRule, 0, groups)
	for i := 0; i < len(all); {
		t := all[i].Type
		by := levels[:width:width]
		levels = levels[width:]
		n := numLevels
		for ; i < len(all) && all[i].Type == t; i++ {
			n = max(n, len(all[i].ByLevel))
			for l, v := range all[i].ByLevel {
				by[l] = max(by[l], normPIIAction(v))
			}
		}
		by = by[:n:n]
		for l, v := range by {
			if v == trustfedv1.PiiAction_PII_ACTION_UNSPECIFIED {
				by[l] = trustfedv1.PiiAction_PII_ACTION_PASS // what PIIAction reads for it anyway
			}
		}
		r := &rules[len(out)]
		r.Type, r.ByLevel = t, by
		out = append(out, r)
	}
	o.DataHandling.PiiRules = out
	return ""
}

// resolveLimits keeps, per action, the lower limit of both sides.
func resolveLimits(o *trustfedv1.ControlProfile, a, b profileView) string {
	la, lb := a.ActionAuthorization.Limits, b.ActionAuthorization.Limits
	if len(la)+len(lb) == 0 {
		return ""
	}
	all := make([]*trustfedv1.ActionLimit, 0, len(la)+len(lb))
	for _, l := range la {
		if l != nil {
			all = append(all, l)
		}
	}
	for _, l := range lb {
		if l != nil {
			all = append(all, l)
		}
	}
	slices.SortFunc(all, func(x, y *trustfedv1.ActionLimit) int {
		return cmp.Or(cmp.Compare(x.Action, y.Action), cmp.Compare(x.MaxValue, y.MaxValue))
	})
	limits := make([]trustfedv1.ActionLimit, len(all)) // one allocation for every output limit
	out := make([]*trustfedv1.ActionLimit, 0, len(all))
	for i, l := range all {
		if i > 0 && l.Action == all[i-1].Action {
			continue // sorted by value within an action: the first is the lowest
		}
		lim := &limits[len(out)]
		lim.Action, lim.MaxValue = l.Action, l.MaxValue
		out = append(out, lim)
	}
	o.ActionAuthorization.Limits = out
	return ""
}

// intersectRestrictions intersects two restriction lists in which empty means
// "no restriction". The result is sorted and without duplicates; disjoint is
// true when both sides restrict and share nothing.
func intersectRestrictions(x, y []string) (out []string, disjoint bool) {
	switch {
	case len(x) == 0 && len(y) == 0:
		return nil, false
	case len(x) == 0:
		return sortedSet(y), false
	case len(y) == 0:
		return sortedSet(x), false
	}
	sx, sy := sortedSet(x), sortedSet(y)
	out = sx[:0] // sx is our own copy
	for i, j := 0, 0; i < len(sx) && j < len(sy); {
		switch c := cmp.Compare(sx[i], sy[j]); {
		case c < 0:
			i++
		case c > 0:
			j++
		default:
			out = append(out, sx[i])
			i++
			j++
		}
	}
	if len(out) == 0 {
		return nil, true
	}
	return out, false
}

// sortedSet is a sorted copy of s without duplicates.
func sortedSet(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// canonicalPair orders two lists' sorted sets so that a message about them
// reads the same whichever side each came from.
func canonicalPair(x, y []string) ([]string, []string) {
	sx, sy := sortedSet(x), sortedSet(y)
	if slices.Compare(sx, sy) > 0 {
		sx, sy = sy, sx
	}
	return sx, sy
}

// lowerThreshold is the lower of two dual-authorisation thresholds, where a
// value of 0 or less means "no threshold".
func lowerThreshold(x, y int64) int64 {
	x, y = max(x, 0), max(y, 0)
	switch {
	case x == 0:
		return y
	case y == 0:
		return x
	}
	return min(x, y)
}

// shorterDuration is a copy of the shorter of two durations, nil standing
// for "states nothing".
func shorterDuration(x, y *durationpb.Duration) *durationpb.Duration {
	switch {
	case x == nil && y == nil:
		return nil
	case x == nil:
		x = y
	case y != nil && cmp.Or(cmp.Compare(y.Seconds, x.Seconds), cmp.Compare(y.Nanos, x.Nanos)) < 0:
		x = y
	}
	return &durationpb.Duration{Seconds: x.Seconds, Nanos: x.Nanos}
}
