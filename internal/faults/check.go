package faults

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/anishathalye/porcupine"
)

// ArtifactsEnv names the directory failing histories are saved under
// (default: a new directory in the system's temporary directory).
const ArtifactsEnv = "TRUSTFED_FAULTS_ARTIFACTS"

// ErrNotLinearizable is returned by Check for a history that no sequential
// order of its operations explains.
var ErrNotLinearizable = errors.New("history is not linearizable")

// ErrCheckTimeout is returned by Check when porcupine ran out of time.
var ErrCheckTimeout = errors.New("linearizability check timed out")

// Check checks ops against the model started at init. On a violation (or a
// check that ran out of time) it saves the history, the seed and
// porcupine's visualisation under a new directory in dir (or $ArtifactsEnv,
// or the temporary directory when dir is empty) and names it in the error.
func Check(name string, seed int64, init State, ops []porcupine.Operation, timeout time.Duration, dir string) error {
	model := NewModel(init)
	res, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	var verdict error
	switch res {
	case porcupine.Ok:
		return nil
	case porcupine.Illegal:
		verdict = ErrNotLinearizable
	default:
		verdict = ErrCheckTimeout
	}
	saved, err := save(name, seed, init, ops, model, info, dir)
	if err != nil {
		return fmt.Errorf("%s (seed %d, %d operations): %w; saving the history: %v", name, seed, len(ops), verdict, err)
	}
	return fmt.Errorf("%s (seed %d, %d operations): %w; history and visualisation in %s", name, seed, len(ops), verdict, saved)
}

type artefact struct {
	Name       string                `json:"name"`
	Seed       int64                 `json:"seed"`
	Init       State                 `json:"init"`
	Operations []porcupine.Operation `json:"operations"`
}

func save(name string, seed int64, init State, ops []porcupine.Operation, model porcupine.Model, info porcupine.LinearizationInfo, dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv(ArtifactsEnv)
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("create artefact dir: %w", err)
		}
	}
	out, err := os.MkdirTemp(dir, fmt.Sprintf("%s-seed%d-", filepath.Base(name), seed))
	if err != nil {
		return "", fmt.Errorf("create artefact dir: %w", err)
	}
	b, err := json.MarshalIndent(artefact{Name: name, Seed: seed, Init: init, Operations: ops}, "", " ")
	if err != nil {
		return "", fmt.Errorf("encode history: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, "history.json"), b, 0o644); err != nil {
		return "", fmt.Errorf("write history: %w", err)
	}
	if err := porcupine.VisualizePath(model, info, filepath.Join(out, "visualization.html")); err != nil {
		return "", fmt.Errorf("visualise: %w", err)
	}
	return out, nil
}
