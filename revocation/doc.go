// Package revocation will hold the revocation cascade: the pre-computed
// notification graph kept by the state machine, and the leader-only
// dispatcher that notifies every partner of a revoked organisation in
// parallel, retries until acknowledged and escalates near the 300 s deadline
// (AG-783 R5, TC2).
//
// For now it answers the one question the cascade starts from: who are an
// organisation's partners? A revocation already takes effect on the very
// next check on every node (the check reads the organisation's status from
// the replicated state); what this package adds later is the notification.
package revocation
