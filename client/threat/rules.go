package threat

import (
	"regexp"
	"strings"
)

// phraseRule is one family of phrases, matched on normalized text. Every
// match contains one of its triggers, plain substrings checked first: most
// messages contain none, and the regular expression never runs on them.
type phraseRule struct {
	code     ReasonCode
	weight   float64
	detail   string
	triggers []string
	re       *regexp.Regexp
}

func rule(code ReasonCode, weight float64, detail string, triggers []string, expr string) phraseRule {
	return phraseRule{code, weight, detail, triggers, regexp.MustCompile(expr)}
}

func triggers(t ...string) []string { return t }

// triggerIndex lists, per first byte, every rule's triggers.
var triggerIndex = func() (idx [256][]struct {
	rule int
	s    string
}) {
	for i, r := range phraseRules {
		for _, t := range r.triggers {
			idx[t[0]] = append(idx[t[0]], struct {
				rule int
				s    string
			}{i, t})
		}
	}
	return idx
}()

// triggered is the set of rules (bit i for phraseRules[i]) with a trigger
// in text, from one pass over it. Triggers are looked for where a word
// starts (the rules' expressions begin at word boundaries too).
func triggered(text string) uint64 {
	var mask uint64
	for i := 0; i < len(text); i++ {
		if i > 0 && isWordByte(text[i]) && isWordByte(text[i-1]) {
			continue
		}
		for _, t := range triggerIndex[text[i]] {
			if mask&(1<<t.rule) == 0 && strings.HasPrefix(text[i:], t.s) {
				mask |= 1 << t.rule
			}
		}
	}
	return mask
}

// phraseRules are matched on normalize(body), and on text decoded from
// base64 or Unicode tags.
var phraseRules = []phraseRule{
	rule(ReasonInstructionOverride, 0.75, "ignore previous instructions", triggers("ignore", "disregard", "forget", "skip", "override", "bypass", "neglect", "drop"),
		`\b(ignore|disregard|forget|skip|override|bypass|neglect|drop)\b (all |any |the |your |my |these |those |of |every )*(previous|prior|above|earlier|preceding|former|original|initial|system|existing|old|given)( \w+)? (instructions?|prompts?|rules|directions|guidelines|directives|messages|commands|constraints|guardrails|context)\b`),
	rule(ReasonInstructionOverride, 0.75, "do not follow your instructions", triggers("do not follow", "do not obey", "do not comply"),
		`\bdo not (follow|obey|comply with) (the |your |any )*(previous|prior|above|original|system|earlier) (instructions|rules|prompt|guidelines)`),
	rule(ReasonInstructionOverride, 0.7, "forget everything above", triggers("forget", "ignore", "disregard"),
		`\b(forget|ignore|disregard) (everything|all of that|anything|all) (you were told|you have been told|above|before this|said before|prior)`),
	rule(ReasonInstructionOverride, 0.5, "new instructions", triggers("instruction", "directive", "rules", "task"),
		`\b(new|updated|real|actual|revised) (system )?(instructions|directive|rules|task)s? ?: `),
	rule(ReasonRoleOverride, 0.7, "jailbreak persona", triggers("you are now", "from now on", "act as", "behave as", "pretend to be", "respond as", "become"),
		`\b(you are now|from now on,? you are|act as|behave as|pretend to be|respond as|become) (a |an |the )?(dan|jailbroken|unrestricted|unfiltered|uncensored|evil|rogue|developer mode|god mode|root|system administrator|different (ai|assistant|model))\b`),
	rule(ReasonRoleOverride, 0.7, "special mode", triggers(" mode"),
		`\benter(ing)? (developer|god|dan|debug|admin|sudo|jailbreak) mode\b`),
	rule(ReasonRoleOverride, 0.45, "you are now", triggers("from now on", "you are no longer", "pretend"),
		`\b(from now on,? you (are|will|must|shall)|you are no longer (an?|the|bound)|pretend (that )?you are)\b`),
	rule(ReasonRoleOverride, 0.7, "chat template marker", triggers("<|", "inst]", "<<sys>>", "<</sys>>", "### "),
		`<\|(im_start|im_end|system|endoftext|start_header_id)\|>|\[/?inst\]|<</?sys>>|### (system|instruction)s? ?:`),
	rule(ReasonPromptExfiltration, 0.75, "reveal the system prompt", triggers("prompt", "preprompt", "pre-prompt", "instructions", "system message", "developer message", "rules", "guidelines"),
		`\b(reveal|print|show|display|output|repeat|dump|leak|tell me|give me|share|disclose|paste|write out|what (is|are|were))( me| us)? (your|the) (full |entire |complete |exact |original |hidden |secret |verbatim |initial )*(system prompt|system message|developer message|hidden (prompt|instructions)|initial (prompt|instructions)|original (prompt|instructions)|pre-?prompt|instructions you were given|(prompt|instructions|rules|guidelines) (above|verbatim))`),
	rule(ReasonPromptExfiltration, 0.7, "repeat the text above", triggers("above", "before this", "prior to this"),
		`\b(repeat|print|output|echo) (everything|all|the text|the words|all text|the content) (above|before this|prior to this)`),
	rule(ReasonPromptExfiltration, 0.6, "your instructions", triggers("your instructions", "your prompt", "your rules", "your guidelines", "your configuration"),
		`\b(reveal|print|show|repeat|dump|disclose|tell me|what are) (me )?your (instructions|prompt|rules|guidelines|configuration)\b`),
	rule(ReasonToolInjection, 0.7, "pipe a download into a shell", triggers("curl", "wget", "iwr", "invoke-webrequest"),
		`\b(curl|wget|iwr|invoke-webrequest)\b[^|\n]{0,200}\| ?(sudo )?(ba|z|da)?sh\b`),
	rule(ReasonToolInjection, 0.7, "destructive shell command", triggers("rm -", "mkfs.", "dd if=", ":(){"),
		`\brm -(rf|fr) (/\*?|~/?|\*|\$home|\.\*)( |$|;|&)|\bmkfs\.|\bdd if=/dev/(zero|random) of=/dev/|:\(\)\{ ?:\|:& ?\};:`),
	rule(ReasonToolInjection, 0.6, "chained command reading secrets", triggers("/etc/", ".ssh", "id_rsa", ".aws", ".env"),
		`(;|&&|\|\||\$\(|\x60) ?(cat|curl|wget|nc|ncat|bash|sh|python3?|perl|base64)\b[^\n]{0,60}(/etc/passwd|/etc/shadow|\.ssh|id_rsa|\.aws/credentials|\.env\b)`),
	rule(ReasonToolInjection, 0.6, "script injection", triggers("script", "javascript:", "onerror", "onload"),
		`<\s*script\b|\bjavascript:|\bon(error|load)\s*=\s*["']?[a-z]`),
	rule(ReasonToolInjection, 0.65, "tool-call markup", triggers("tool_", "function_call", "invoke", "\"tool\"", "\"function\"", "\"name\""),
		`</?(tool_call|tool_use|function_calls|function_call|invoke|antml:invoke)\b|"(tool|function|tool_name|name)" ?: ?"[^"]{1,64}" ?, ?"(arguments|parameters|input|args)" ?: ?[{\[]`),
	rule(ReasonToolInjection, 0.6, "encoded shell", triggers("powershell", "base64 -d", "base64 --decode"),
		`\bpowershell(\.exe)? .{0,40}-(enc|encodedcommand|e) [a-z0-9+/=]{16,}|\bbase64 (-d|--decode)\b[^\n]{0,40}\| ?(ba)?sh\b`),
	rule(ReasonToolInjection, 0.4, "call a tool", triggers("tool", "function", "plugin", "shell", "terminal"),
		`\b(call|invoke|use|run|execute|trigger) (the |your )?[a-z_]{0,30}[ _]?(tool|function|plugin|shell|terminal)\b (with|to|and|now|immediately)\b`),
	rule(ReasonExfilInstruction, 0.7, "send data to an address", triggers("send", "forward", "post", "upload", "email", "e-mail", "mail", "transmit", "exfiltrate", "leak", "copy", "append", "include"),
		`\b(send|forward|post|upload|email|e-mail|transmit|exfiltrate|leak|copy|append|include)\b (me |us )?((all|every|each|any|the entire|the whole|the full) (of )?(the |your |our |this )?(data|files|records|emails|contacts|documents|messages|customer (records|data|list)|information)|(the |your |our |this |all )*((entire|whole|full|complete) )?(conversation|chat|chat history|conversation history|secrets?|credentials|passwords?|api keys?|access tokens?|tokens|system prompt|memory|context window|session cookies?|private keys?|env(ironment)? variables))( \w+){0,4} to (https?://|[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}|my (server|endpoint|email|webhook)|this (url|address|endpoint|webhook)|the following (url|address|endpoint))`),
	rule(ReasonExfilInstruction, 0.6, "render an image with data", triggers("!["),
		`!\[[^\]]{0,64}\]\(https?://[^)\s]{1,200}(\{|%7b|<|\$)`),
}

// matchPhrases returns a reason for every phrase rule that matches text
// (normalized), with the given code override for decoded text.
func matchPhrases(text string, override ReasonCode, weight float64, origin string) []Reason {
	var out []Reason
	mask := triggered(text)
	for i, r := range phraseRules {
		if mask&(1<<i) != 0 && r.re.MatchString(text) {
			rs := Reason{Code: r.code, Detail: r.detail, Weight: r.weight}
			if override != "" {
				rs = Reason{Code: override, Detail: origin + ": " + string(r.code) + ": " + r.detail, Weight: weight}
			}
			out = append(out, rs)
		}
	}
	return out
}

func isWordByte(b byte) bool { return 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '_' }
