package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/client"
)

// exampleCommands returns every "trustfed ..." command line in the
// examples of cmd and its subcommands, keyed by the command whose help
// shows it: continuation lines joined, the shell's && / | / > tail cut.
func exampleCommands(cmd *cobra.Command) map[string][]string {
	out := map[string][]string{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		text := strings.ReplaceAll(c.Example, "\\\n", " ")
		for _, line := range strings.Split(text, "\n") {
			i := strings.Index(line, "trustfed ")
			if i < 0 || strings.TrimSpace(line[:i]) != "" {
				continue // not a trustfed command (curl, a comment)
			}
			line = line[i:]
			for _, sep := range []string{" && ", " | ", " > ", "; "} {
				line, _, _ = strings.Cut(line, sep)
			}
			out[c.CommandPath()] = append(out[c.CommandPath()], strings.TrimSpace(line))
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(cmd)
	return out
}

// shellWords splits a command line as a POSIX shell does for the simple
// cases examples use: blanks, single and double quotes.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	var quote rune
	inWord := false
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case unicode.IsSpace(r):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	require.Zero(t, quote, "unbalanced quote in %q", line)
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// Every example a --help shows parses: the command exists, its flags are
// known and its positional arguments are the ones it takes. Then it is run
// against no server: whatever fails (a missing file, no server), it must not
// be a usage error (exit 2), which is what a wrong example gives.
func TestHelpExamplesParse(t *testing.T) {
	t.Chdir(t.TempDir()) // keygen's example writes acme.key
	examples := exampleCommands(newRootCmd(&app{getenv: func(string) string { return "" }, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}))
	require.NotEmpty(t, examples)
	n := 0
	for path, lines := range examples {
		for _, line := range lines {
			n++
			t.Run(line, func(t *testing.T) {
				// Shell variables the examples use, with values of their kind.
				vars := map[string]string{"VKEY": otherVerifierKey(t, "registry.example/audit")}
				words := shellWords(t, os.Expand(line, func(k string) string { return vars[k] }))
				require.Equal(t, "trustfed", words[0])
				root := newRootCmd(&app{getenv: func(string) string { return "" }, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}})
				cmd, rest, err := root.Find(words[1:])
				require.NoError(t, err, "example of %q", path)
				require.NoError(t, cmd.ParseFlags(rest), "example of %q: flags", path)
				require.NoError(t, cmd.ValidateArgs(cmd.Flags().Args()), "example of %q: arguments of %q", path, cmd.CommandPath())
				require.NoError(t, cmd.ValidateRequiredFlags(), "example of %q", path)

				env := map[string]string{client.EnvAddr: "127.0.0.1:1", client.EnvToken: "t", envAdminKey: "admin.key"}
				code, stdout, stderr := runCLI(env, append([]string{"--timeout", "2s"}, words[1:]...)...)
				require.NotEqual(t, exitUsage, code, "example of %q is a usage error:\nstdout: %s\nstderr: %s", path, stdout, stderr)
			})
		}
	}
	require.Greater(t, n, 25)
}

// check is a member call: with the dev banner's admin token the error says
// that a member certificate is needed and how to get and present one.
func TestCheckWithAdminTokenNamesTheNextStep(t *testing.T) {
	s := startRealServer(t)
	_, stderr := s.run(t, exitError, "check", "--from", "acme-bank", "--to", "globex", "--action", "ping")
	require.Contains(t, stderr, "member certificate")
	require.Contains(t, stderr, "trustfed member enrol")
	require.Contains(t, stderr, "trustfed member cert")
	require.Contains(t, stderr, "--cert")

	_, help, _ := runCLI(nil, "check", "--help")
	require.Contains(t, help, "check is a member call")
	require.Contains(t, help, "--cert/--key")
}

// readmeSection returns the text of README.md from heading to the next
// heading of the same level.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	require.GreaterOrEqual(t, i, 0, "README.md has no %q", heading)
	s = s[i+len(heading)+2:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

// The README's three-node block: every trustfed command in it parses, it
// waits for readiness before it reads d1/admin.token, says to stop make run,
// and writes the servers' logs to files in the ignored scratch dir.
func TestREADMEClusterBlock(t *testing.T) {
	sec := readmeSection(t, "## A three-node cluster")
	require.Contains(t, sec, "Stop `make run` first")
	require.Contains(t, sec, "mkdir -p scratch && cd scratch")
	gitignore, err := os.ReadFile("../../.gitignore")
	require.NoError(t, err)
	require.Contains(t, string(gitignore), "/scratch/\n")

	var code strings.Builder // the fenced shell blocks only
	in := false
	for _, line := range strings.Split(sec, "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			in = !in
		case in:
			code.WriteString(line + "\n")
		}
	}
	block := strings.ReplaceAll(code.String(), "\\\n", " ")
	wait, token := strings.Index(block, "trustfed wait-ready --addr 127.0.0.1:7441"), strings.Index(block, "cat d1/admin.token")
	require.True(t, wait >= 0 && token > wait, "wait-ready comes before the token is read")
	n := 0
	for _, line := range strings.Split(block, "\n") {
		line, _, _ = strings.Cut(line, "#") // comments
		i := strings.Index(line, "trustfed ")
		if i < 0 || strings.HasPrefix(strings.TrimSpace(line), "for ") && !strings.Contains(line, "do trustfed") {
			continue
		}
		if j := strings.Index(line, "do trustfed"); j >= 0 {
			i = j + len("do ")
		}
		line = line[i:]
		for _, sep := range []string{" > ", " && ", "; done", " &"} {
			line, _, _ = strings.Cut(line, sep)
		}
		words := shellWords(t, strings.ReplaceAll(line, "$n", "n1"))
		if len(words) > 1 && words[1] == "server" {
			require.Contains(t, sec, words[len(words)-1]+" > "+"n", "server output goes to a log file")
			n++
			continue // server flags are Go flags, checked by the server's own tests
		}
		root := newRootCmd(&app{getenv: func(string) string { return "" }, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}})
		cmd, rest, err := root.Find(words[1:])
		require.NoError(t, err, line)
		require.NoError(t, cmd.ParseFlags(rest), line)
		require.NoError(t, cmd.ValidateArgs(cmd.Flags().Args()), line)
		n++
	}
	require.GreaterOrEqual(t, n, 9)
}
