// Package threat inspects cross-organisation messages before a member's
// gateway sends or accepts them: a Gate returns a Verdict (allow or block,
// a score in [0, 1] and typed reasons).
//
// RuleGate is the default Gate, a set of deterministic rules:
//
//   - prompt injection in what arrives or leaves: instruction overrides
//     ("ignore previous instructions"), role overrides ("you are now",
//     chat-template markers such as "<|im_start|>system"), system-prompt
//     exfiltration ("reveal your system prompt"), tool and command injection
//     markers ("curl … | sh", "<tool_call>", "rm -rf /"), instructions to send
//     data somewhere, the same phrases hidden in base64 or in invisible
//     Unicode tag characters, and invisible or bidirectional control
//     characters themselves;
//   - data exfiltration in what leaves: secrets found by client/pii (keys,
//     tokens, private keys, passwords, database URLs), large encoded blobs,
//     and URLs that carry data in their query (markdown images included).
//
// Each rule that fires adds a Reason with a weight; the score is
// 1 − Π(1 − weight), and the message is blocked at Config.BlockScore (0.5
// by default). Text is compared after NFKC folding, lower-casing, removal
// of invisible characters and collapsing of white space, so full-width
// letters, zero-width joiners and line breaks do not split a phrase. A
// cancelled context blocks (fail closed).
//
// Rules are not a model: paraphrases they do not list, other languages,
// and instructions spelled out one character at a time get through. The
// measured precision and recall on the labelled set in testdata/ are in
// docs/pii.md.
package threat
