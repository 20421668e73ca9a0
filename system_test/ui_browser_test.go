package system_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// EnvUIScreenshots names the folder the dashboard test writes its
// screenshots to (`make ui-screenshots`); unset, they go to a temporary
// folder removed after the test.
const EnvUIScreenshots = "TRUSTFED_UI_SCREENSHOTS"

// chromiumPath finds a Chromium or Chrome binary; the test skips without one
// (CI installs Debian's chromium in .ci/run, so it runs there).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TRUSTFED_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium binary on PATH (apt-get install chromium, or set TRUSTFED_CHROMIUM): the dashboard browser test cannot run")
	return ""
}

// browser is one headless Chromium process for a test; each tab is a
// separate session (its own sessionStorage). Console errors and uncaught
// exceptions of every tab are collected.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
	wg    sync.WaitGroup // the tabs' console readers

	mu     sync.Mutex
	errors []string
	logs   []string // every console message, shown when a wait fails
}

func newBrowser(t *testing.T, execPath, base string) *browser {
	t.Helper()
	shots := os.Getenv(EnvUIScreenshots)
	if shots == "" {
		shots = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(shots, 0o755))
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
		// The dev server's certificate is from its own CA, on loopback.
		chromedp.Flag("ignore-certificate-errors", true),
		// CI runs as root, where Chromium's sandbox cannot start.
		chromedp.NoSandbox,
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	require.NoError(t, chromedp.Do(bctx), "start chromium")
	b := &browser{t: t, ctx: bctx, base: base, shots: shots}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		_ = chromedp.Cancel(cctx) // closes the browser and waits for its process
		cancel()
		cancelBrowser()
		cancelAlloc()
		b.wg.Wait()
	})
	return b
}

// tab opens a new tab on the dashboard (signed out) and returns its context.
func (b *browser) tab(name string) context.Context {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	require.NoError(b.t, chromedp.Do(ctx), "open tab %s", name)
	messages := chromedp.Console(ctx)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.logs = append(b.logs, fmt.Sprintf("%s: %s %s:%d", name, m, m.URL, m.Line))
			b.mu.Unlock()
			// Calls of console.error and uncaught exceptions; the browser's
			// own log (a 401 answer to a wrong token) is not the page's error.
			if m.Source == "" && (m.Type == chromedp.ConsoleError || m.IsException()) {
				b.fail(fmt.Sprintf("%s: %s", name, m))
			}
		}
	}()
	b.do(ctx, chromedp.Navigate(b.base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#login-view #token")))
	return ctx
}

func (b *browser) fail(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errors = append(b.errors, msg)
}

func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// do runs actions in tab with a deadline.
func (b *browser) do(tab context.Context, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(tab, 60*time.Second)
	defer cancel()
	require.NoError(b.t, chromedp.Do(ctx, actions...))
}

// login signs in with token and waits for the page list.
func (b *browser) login(tab context.Context, token string) {
	b.t.Helper()
	b.eval(tab, `document.getElementById('token').value = ''`)
	b.do(tab,
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#sign-in")))
	b.waitJS(tab, "signed in", `!document.getElementById('app-view').hidden && !!document.querySelector('#nav a')`)
}

// page opens a page by its hash and waits until it has loaded data at least
// once (or says it is not permitted).
func (b *browser) page(tab context.Context, id string) {
	b.t.Helper()
	b.eval(tab, fmt.Sprintf("location.hash = %q", "#"+id))
	b.waitJS(tab, fmt.Sprintf("page %s shows", id),
		fmt.Sprintf(`(() => { const p = document.getElementById('page'); return p.dataset.page === %q && (p.dataset.index !== undefined || !!p.querySelector('[data-denied]') || %q === 'interactions'); })()`, id, id))
}

// waitJS waits until the JavaScript expression is true in tab.
func (b *browser) waitJS(tab context.Context, what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(tab, 90*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second)))
	if err != nil {
		text, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
		b.mu.Lock()
		logs := strings.Join(b.logs, "\n")
		b.mu.Unlock()
		b.t.Fatalf("waiting until %s: %v\n--- page text:\n%s\n--- console:\n%s", what, err, text, logs)
	}
}

// eval evaluates a JavaScript expression in tab, for its effect.
func (b *browser) eval(tab context.Context, expr string) {
	b.t.Helper()
	evalAs[chromedp.Void](b, tab, expr)
}

func (b *browser) evalBool(tab context.Context, expr string) bool {
	b.t.Helper()
	return evalAs[bool](b, tab, expr)
}

func (b *browser) evalString(tab context.Context, expr string) string {
	b.t.Helper()
	return evalAs[string](b, tab, expr)
}

func evalAs[T any](b *browser, tab context.Context, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(tab, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	require.NoError(b.t, err, "evaluate %s", expr)
	return v
}

// screenshot saves the tab's viewport as name.png.
func (b *browser) screenshot(tab context.Context, name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(tab, 60*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(b.t, err, "screenshot %s", name)
	require.NoError(b.t, os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644))
}
