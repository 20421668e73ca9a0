package threat

import "testing"

// The trigger mask is a uint64: one bit per phrase rule.
func TestPhraseRulesFitTheTriggerMask(t *testing.T) {
	if len(phraseRules) > 64 {
		t.Fatalf("%d phrase rules; the trigger mask holds 64", len(phraseRules))
	}
	for i, r := range phraseRules {
		if len(r.triggers) == 0 {
			t.Errorf("rule %d (%s) has no triggers and would never run", i, r.detail)
		}
	}
}
