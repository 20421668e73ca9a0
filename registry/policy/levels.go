package policy

import (
	"fmt"
	"slices"
)

// Trust levels (AG-783, the 5-tier model).
const (
	LevelUntrusted  uint32 = 0 // discovery only
	LevelVerified   uint32 = 1 // status, ping
	LevelAttested   uint32 = 2 // tasks, redacted memory queries
	LevelTrusted    uint32 = 3 // shared context, collaborative execution
	LevelPrivileged uint32 = 4 // full memory, remote agent spawning
)

var levelNames = [...]string{"UNTRUSTED", "VERIFIED", "ATTESTED", "TRUSTED", "PRIVILEGED"}

// LevelName is the name of a level, e.g. "TRUSTED".
func LevelName(l uint32) string {
	if int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("LEVEL_%d", l)
}

// actionLevels is the capability tier table: the minimum level each action needs.
var actionLevels = map[string]uint32{
	"discovery":               LevelUntrusted,
	"status":                  LevelVerified,
	"ping":                    LevelVerified,
	"task_send":               LevelAttested,
	"task_receive":            LevelAttested,
	"memory_query":            LevelAttested,
	"context_share":           LevelTrusted,
	"collaborative_execution": LevelTrusted,
	"memory_share_full":       LevelPrivileged,
	"agent_spawn":             LevelPrivileged,
}

// RequiredLevel is the minimum level action needs; ok is false for an unknown action.
func RequiredLevel(action string) (level uint32, ok bool) {
	level, ok = actionLevels[action]
	return level, ok
}

// Actions lists every known action in name order.
func Actions() []string {
	out := make([]string, 0, len(actionLevels))
	for a := range actionLevels {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}
