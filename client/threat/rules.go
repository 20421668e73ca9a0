package threat

import "regexp"

// phraseRule is one family of phrases, matched on normalized text.
type phraseRule struct {
	code   ReasonCode
	weight float64
	detail string
	re     *regexp.Regexp
}

func rule(code ReasonCode, weight float64, detail, expr string) phraseRule {
	return phraseRule{code, weight, detail, regexp.MustCompile(expr)}
}

// phraseRules are matched on normalize(body), and on text decoded from
// base64 or Unicode tags.
var phraseRules = []phraseRule{
	rule(ReasonInstructionOverride, 0.75, "ignore previous instructions",
		`\b(ignore|disregard|forget|skip|override|bypass|neglect|drop)\b (all |any |the |your |my |these |those |of |every )*(previous|prior|above|earlier|preceding|former|original|initial|system|existing|old|given)( \w+)? (instructions?|prompts?|rules|directions|guidelines|directives|messages|commands|constraints|guardrails|context)\b`),
	rule(ReasonInstructionOverride, 0.75, "do not follow your instructions",
		`\bdo not (follow|obey|comply with) (the |your |any )*(previous|prior|above|original|system|earlier) (instructions|rules|prompt|guidelines)`),
	rule(ReasonInstructionOverride, 0.7, "forget everything above",
		`\b(forget|ignore|disregard) (everything|all of that|anything|all) (you were told|you have been told|above|before this|said before|prior)`),
	rule(ReasonInstructionOverride, 0.5, "new instructions",
		`\b(new|updated|real|actual|revised) (system )?(instructions|directive|rules|task)s? ?: `),
	rule(ReasonRoleOverride, 0.7, "jailbreak persona",
		`\b(you are now|from now on,? you are|act as|behave as|pretend to be|respond as|become) (a |an |the )?(dan|jailbroken|unrestricted|unfiltered|uncensored|evil|rogue|developer mode|god mode|root|system administrator|different (ai|assistant|model))\b`),
	rule(ReasonRoleOverride, 0.7, "special mode",
		`\benter(ing)? (developer|god|dan|debug|admin|sudo|jailbreak) mode\b`),
	rule(ReasonRoleOverride, 0.45, "you are now",
		`\b(from now on,? you (are|will|must|shall)|you are no longer (an?|the|bound)|pretend (that )?you are)\b`),
	rule(ReasonRoleOverride, 0.7, "chat template marker",
		`<\|(im_start|im_end|system|endoftext|start_header_id)\|>|\[/?inst\]|<</?sys>>|### (system|instruction)s? ?:`),
	rule(ReasonPromptExfiltration, 0.75, "reveal the system prompt",
		`\b(reveal|print|show|display|output|repeat|dump|leak|tell me|give me|share|disclose|paste|write out|what (is|are|were))( me| us)? (your|the) (full |entire |complete |exact |original |hidden |secret |verbatim |initial )*(system prompt|system message|developer message|hidden (prompt|instructions)|initial (prompt|instructions)|original (prompt|instructions)|pre-?prompt|instructions you were given|(prompt|instructions|rules|guidelines) (above|verbatim))`),
	rule(ReasonPromptExfiltration, 0.7, "repeat the text above",
		`\b(repeat|print|output|echo) (everything|all|the text|the words|all text|the content) (above|before this|prior to this)`),
	rule(ReasonPromptExfiltration, 0.6, "your instructions",
		`\b(reveal|print|show|repeat|dump|disclose|tell me|what are) (me )?your (instructions|prompt|rules|guidelines|configuration)\b`),
	rule(ReasonToolInjection, 0.7, "pipe a download into a shell",
		`\b(curl|wget|iwr|invoke-webrequest)\b[^|\n]{0,200}\| ?(sudo )?(ba|z|da)?sh\b`),
	rule(ReasonToolInjection, 0.7, "destructive shell command",
		`\brm -(rf|fr) (/\*?|~/?|\*|\$home|\.\*)( |$|;|&)|\bmkfs\.|\bdd if=/dev/(zero|random) of=/dev/|:\(\)\{ ?:\|:& ?\};:`),
	rule(ReasonToolInjection, 0.6, "chained command reading secrets",
		`(;|&&|\|\||\$\(|\x60) ?(cat|curl|wget|nc|ncat|bash|sh|python3?|perl|base64)\b[^\n]{0,60}(/etc/passwd|/etc/shadow|\.ssh|id_rsa|\.aws/credentials|\.env\b|https?://)`),
	rule(ReasonToolInjection, 0.6, "script injection",
		`<\s*script\b|\bjavascript:|\bon(error|load)\s*=\s*["']?[a-z]`),
	rule(ReasonToolInjection, 0.65, "tool-call markup",
		`</?(tool_call|tool_use|function_calls|function_call|invoke|antml:invoke)\b|"(tool|function|tool_name|name)" ?: ?"[^"]{1,64}" ?, ?"(arguments|parameters|input|args)" ?: ?[{\[]`),
	rule(ReasonToolInjection, 0.6, "encoded shell",
		`\bpowershell(\.exe)? .{0,40}-(enc|encodedcommand|e) [a-z0-9+/=]{16,}|\bbase64 (-d|--decode)\b[^\n]{0,40}\| ?(ba)?sh\b`),
	rule(ReasonToolInjection, 0.4, "call a tool",
		`\b(call|invoke|use|run|execute|trigger) (the |your )?[a-z_]{0,30}[ _]?(tool|function|plugin|shell|terminal)\b (with|to|and|now|immediately)\b`),
	rule(ReasonExfilInstruction, 0.7, "send data to an address",
		`\b(send|forward|post|upload|email|e-mail|transmit|exfiltrate|leak|copy|append|include)\b (me |us )?((all|every|each|any|the entire|the whole|the full) (of )?(the |your |our |this )?(data|files|records|emails|contacts|documents|messages|customer (records|data|list)|information)|(the |your |our |this |all )*((entire|whole|full|complete) )?(conversation|chat|chat history|conversation history|secrets?|credentials|passwords?|api keys?|access tokens?|tokens|system prompt|memory|context window|session cookies?|private keys?|env(ironment)? variables))( \w+){0,4} to (https?://|[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}|my (server|endpoint|email|webhook)|this (url|address|endpoint|webhook)|the following (url|address|endpoint))`),
	rule(ReasonExfilInstruction, 0.6, "render an image with data",
		`!\[[^\]]{0,64}\]\(https?://[^)\s]{1,200}(\{|%7b|<|\$)`),
}

// matchPhrases returns a reason for every phrase rule that matches text
// (normalized), with the given code override for decoded text.
func matchPhrases(text string, override ReasonCode, weight float64, origin string) []Reason {
	var out []Reason
	for _, r := range phraseRules {
		if r.re.MatchString(text) {
			rs := Reason{Code: r.code, Detail: r.detail, Weight: r.weight}
			if override != "" {
				rs = Reason{Code: override, Detail: origin + ": " + string(r.code) + ": " + r.detail, Weight: weight}
			}
			out = append(out, rs)
		}
	}
	return out
}
