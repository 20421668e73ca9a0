// Package revocation holds the revocation cascade (AG-783 R5, TC2): who an
// organisation's partners are, and the leader-only dispatcher that notifies
// every one of them in parallel, retries until each acknowledges, and
// escalates those still silent near the 300 s deadline. A revocation itself
// takes effect on the very next check on every node (the check reads the
// organisation's status from the replicated state); this package is about
// telling the partners.
//
// Partners answers, from the replicated state, who is to be notified.
//
// Dispatcher.Run notifies the targets of one Cascade through a Sender and
// reports progress to a Recorder, which the registry implements by batching
// (see Batcher) into Raft commands that keep the cascade record: per
// partner, its attempts, when it acknowledged and on which Channel, and
// whether it was escalated. The library itself knows nothing of the state
// or of Raft.
//
//   - Parallel, bounded: up to Config.Workers sends are in flight. Workers
//     take targets from a ready queue owned by Run's goroutine; a failed
//     target goes into a timer heap with its own exponential backoff (full
//     jitter) and returns to the queue when due, so no worker ever sleeps
//     through a backoff and there is no serial loop over the partners.
//   - Deadline and escalation: partners still unacknowledged at
//     Config.EscalateAt × Config.Deadline after Cascade.Start (240 s of
//     300 s by default) are escalated once each; retries go on past the
//     deadline, every MaxBackoff at most, until acknowledged or Run's
//     context ends.
//   - Fail-over: a new leader calls Run with the original Start and each
//     partner's Progress from the cascade record; acknowledged partners are
//     not notified again, escalated ones not escalated again. Notifications
//     are at least once: receivers de-duplicate by event id.
//
// Senders: WebhookSender posts the notification to a partner's HTTPS
// endpoints, signed by the registry key (SignWebhook: event id, timestamp
// and body under attestation.PurposeWebhook); a 2xx is the
// acknowledgement. FirstOf composes senders, for the registry to try a
// member's open WatchEvents stream first and fall back to webhooks.
// Receivers check a webhook with VerifyWebhook and tell redeliveries with a
// Deduper.
package revocation
