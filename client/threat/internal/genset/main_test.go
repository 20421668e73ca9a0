package main

import (
	"bytes"
	"os"
	"testing"
)

// TestCommittedFileIsGenerated: the committed data set is exactly what the
// generator writes with its default flags, so an edit to one without the
// other fails here.
func TestCommittedFileIsGenerated(t *testing.T) {
	var buf bytes.Buffer
	if err := write(&buf, 900, 17); err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("../../testdata/messages.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), committed) {
		t.Fatalf("../../testdata/messages.jsonl differs from the generator's output; run the generator (see its doc comment)")
	}
}
