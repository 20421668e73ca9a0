package system_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/device"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// TestDashboardInChromium drives the web dashboard (/ui/) of a dev server in
// headless Chromium: a wrong token is refused at sign-in; the admin sees the
// organisations and agreements made through the API, and a revocation
// cascade appear and complete live (no reload) on the Revocations page; the
// audit page verifies an inclusion proof in the page; a regulator sees no
// admin page; a governance token sees only its organisation; a token revoked
// mid-session sends its tab back to sign-in; no page logs a console error.
// Each page is saved as a screenshot (make ui-screenshots).
func TestDashboardInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and a browser")
	}
	chromium := chromiumPath(t)
	rc := newReceivers(t)
	// A short cascade deadline: a partner held down is escalated after 2 s.
	d := startDev(t, "-webhook-ca", rc.caFile(t), "-cascade-deadline", "8s", "-cascade-escalate-at", "0.25")
	admin := dial(t, d.srv, d.caFile, d.token)
	waitServing(t, admin)
	keys, err := admin.Keys(ctxT(t))
	require.NoError(t, err)
	rc.set(func(rc *receivers) { rc.keys = webhookKey(t, keys) })

	fed := testutil.NewFederation(t)
	accredit(t, admin, fed, d.admins)
	withEndpoint := func(org string) func(*trustfedv1.Registration) {
		return func(r *trustfedv1.Registration) { r.NotificationEndpoints = []string{rc.endpoint(org)} }
	}
	enrol(t, admin, fed, "hub", 3)
	enrol(t, admin, fed, "alpha", 3, withEndpoint("alpha"))
	enrol(t, admin, fed, "beta", 2, withEndpoint("beta"))
	agree(t, admin, fed, "hub", "alpha", "task_send")
	agree(t, admin, fed, "hub", "beta", "ping")
	token := func(role trustfedv1.TokenRole, org string) (id, secret string) {
		resp, err := admin.Access().CreateToken(ctxT(t), &trustfedv1.CreateTokenRequest{Role: role, OrganizationId: org, Description: "dashboard test"})
		require.NoError(t, err)
		return resp.Token.Id, resp.Secret
	}
	_, regulator := token(trustfedv1.TokenRole_TOKEN_ROLE_REGULATOR, "")
	_, governance := token(trustfedv1.TokenRole_TOKEN_ROLE_GOVERNANCE, "alpha")
	tempID, temp := token(trustfedv1.TokenRole_TOKEN_ROLE_ADMIN, "")
	_, monitor := token(trustfedv1.TokenRole_TOKEN_ROLE_MONITOR, "")

	b := newBrowser(t, chromium, "https://"+d.srv.Addrs.HTTPAddr)

	// A wrong token is refused at sign-in, with the server's reason.
	tab := b.tab("admin")
	b.do(tab, chromedp.SendKeys(chromedp.CSS("#token"), "tf_not-a-real-token"), chromedp.Click(chromedp.CSS("#sign-in")))
	b.waitJS(tab, "the login error shows", `document.getElementById('login-error').textContent.includes('refused this token')`)
	require.False(t, b.evalBool(tab, `!document.getElementById('app-view').hidden`), "a wrong token does not open the dashboard")
	require.Empty(t, b.evalString(tab, `sessionStorage.getItem('trustfed.token') || ''`), "a refused token is not kept")
	b.screenshot(tab, "login-refused")

	// The admin: every page, with what the API made.
	b.login(tab, d.token)
	require.False(t, b.evalBool(tab, `location.href.includes(`+jsString(d.token)+`)`), "the token is never in the URL")
	for _, id := range []string{"federation", "members", "agreements", "interactions", "revocations", "audit", "changes", "access"} {
		require.True(t, b.evalBool(tab, fmt.Sprintf(`!!document.querySelector('#nav a[data-page=%q]')`, id)), "the admin's menu has %s", id)
	}
	b.page(tab, "federation")
	b.waitJS(tab, "the cluster shows its leader", `document.getElementById('page').textContent.includes('Cluster members')`)
	b.screenshot(tab, "federation")

	b.page(tab, "members")
	for _, org := range []string{"hub", "alpha", "beta"} {
		b.waitJS(tab, org+" is listed", fmt.Sprintf(`!!document.querySelector('#members-table tr[data-org=%q]')`, org))
	}
	require.Equal(t, "2", b.evalString(tab, `document.querySelector('#members-table tr[data-org="beta"] [data-field="level"]').textContent`), "beta's effective level")
	b.screenshot(tab, "members")

	b.page(tab, "agreements")
	b.waitJS(tab, "both agreements are listed", `document.querySelectorAll('#agreements-table tr[data-agreement]').length === 2`)
	b.do(tab, chromedp.Click(chromedp.CSS(`.graph-node[data-org="hub"]`)))
	b.waitJS(tab, "hub's partners show", `!!document.querySelector('[data-partner="alpha"]') && !!document.querySelector('[data-partner="beta"]')`)
	// Keyboard: focus an organisation of the graph and press Enter.
	b.eval(tab, `document.querySelector('.graph-node[data-org="beta"]').focus()`)
	b.do(tab, chromedp.KeyEvent(kb.Enter))
	b.waitJS(tab, "beta's partners show after Enter", `document.getElementById('page').textContent.includes('Partners of beta') && !!document.querySelector('[data-partner="hub"]')`)
	b.do(tab, chromedp.Click(chromedp.CSS(`.graph-node[data-org="hub"]`)))
	b.waitJS(tab, "hub's partners show again", `document.getElementById('page').textContent.includes('Partners of hub')`)
	b.screenshot(tab, "agreements")

	// Revoke hub through the API while the Revocations page is open; alpha's
	// webhook is held down, so the cascade is seen running, then complete.
	b.page(tab, "revocations")
	b.eval(tab, `window.__sameDocument = true`)
	rc.set(func(rc *receivers) { rc.down["alpha"] = -1 })
	revoke := testutil.SetStatus("hub", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED)
	revoke.Reason = "key compromised"
	d.admins.apply(t, revoke, admin)
	b.waitJS(tab, "the cascade appears, running, alpha not acknowledged",
		`!!document.querySelector('article[data-state="running"] [data-partner="alpha"][data-acked="no"]')`)
	b.waitJS(tab, "beta acknowledges", `!!document.querySelector('article [data-partner="beta"][data-acked="yes"]')`)
	b.waitJS(tab, "alpha's silence is escalated", `!!document.querySelector('article[data-state="running"] [data-partner="alpha"].row-escalated')`)
	b.screenshot(tab, "revocations-running")
	rc.set(func(rc *receivers) { rc.down["alpha"] = 0 })
	b.waitJS(tab, "the cascade completes", `!!document.querySelector('article[data-state="complete"] [data-partner="alpha"][data-acked="yes"]')`)
	require.True(t, b.evalBool(tab, `window.__sameDocument === true`), "the page was updated live, not reloaded")
	b.screenshot(tab, "revocations")

	b.page(tab, "audit")
	b.waitJS(tab, "audit entries are listed", `!!document.querySelector('#audit-table button:not([disabled])')`)
	b.do(tab, chromedp.Click(chromedp.CSS(`#audit-table button:not([disabled])`)))
	b.waitJS(tab, "the inclusion proof is verified in the page", `!!document.querySelector('[data-verified="yes"]')`)
	// Every entry in the checkpoint: proofs of every shape (left and right
	// children, the last leaf of an unbalanced tree) verify.
	b.eval(tab, `document.querySelectorAll('#audit-table button:not([disabled])').forEach((b) => b.click())`)
	b.waitJS(tab, "every listed entry's proof is verified", `(() => {
		const n = document.querySelectorAll('#audit-table button:not([disabled])').length;
		return n > 10 && document.querySelectorAll('[data-verified="yes"]').length === n; })()`)
	require.False(t, b.evalBool(tab, `!!document.querySelector('[data-verified="no"]')`))
	b.screenshot(tab, "audit")
	// The page's own verifier refuses a proof of another leaf.
	require.Equal(t, "refused", b.evalString(tab, `(async () => {
		const m = await import('/ui/js/merkle.js');
		const leaf = new TextEncoder().encode('entry');
		const root = await m.leafHash(leaf);
		await m.verifyInclusion(leaf, 0, 1, [], root);
		try { await m.verifyInclusion(new TextEncoder().encode('forged'), 0, 1, [], root); return 'accepted'; } catch { return 'refused'; }
	})()`))

	// A change waiting for a second admin: the page shows the command that approves it.
	bob := testutil.NewAdmin("bob")
	d.admins.apply(t, bob.Enrol(), admin)
	d.admins.apply(t, testutil.Policy(&trustfedv1.FederationPolicyChange{AdminApprovalsRequired: proto.Uint32(2)}), admin)
	lower := testutil.SetLevel("beta", 1)
	lower.Reason = "dashboard test"
	pending, err := admin.ProposeAdminChange(ctxT(t), d.admins[0], lower, time.Hour)
	require.NoError(t, err)
	require.Equal(t, trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_PENDING, pending.Status)
	b.page(tab, "changes")
	b.waitJS(tab, "the pending change shows its approve command",
		fmt.Sprintf(`(document.querySelector('[data-command=%q]') || {}).textContent === %q`, pending.Id, "trustfed admin approve "+pending.Id))
	b.screenshot(tab, "changes")
	b.page(tab, "access")
	b.screenshot(tab, "access")
	// Checks by a member node of alpha: denied (no agreement with beta; hub revoked).
	member := memberClient(t, d, admin, fed, "alpha")
	for _, to := range []string{"beta", "hub", "beta"} {
		resp, err := member.Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{FromOrganizationId: "alpha", ToOrganizationId: to, Action: "ping"})
		require.NoError(t, err)
		require.Equal(t, trustfedv1.Decision_DECISION_DENY, resp.Decision)
	}
	b.page(tab, "interactions")
	b.waitJS(tab, "the checks are counted", `Number((document.querySelector('[data-field="checks"]') || {}).textContent) >= 3 && document.querySelectorAll('[data-reason]').length > 0 &&
		Number((document.querySelector('[data-field="levels-total"]') || {}).textContent) >= 3`)
	b.screenshot(tab, "interactions")

	// A phone's width: the pages reflow, nothing scrolls sideways.
	b.do(tab, chromedp.Emulate(device.IPhone12))
	b.eval(tab, `location.hash = '#members'`)
	b.waitJS(tab, "members at phone width", `!!document.querySelector('#members-table tr[data-org="hub"]')`)
	require.True(t, b.evalBool(tab, `document.documentElement.scrollWidth <= window.innerWidth + 1`), "no horizontal scrolling at phone width")
	b.screenshot(tab, "members-phone")
	b.do(tab, chromedp.EmulateReset())

	// A regulator: no admin page, and Federation says what it may not see.
	reg := b.tab("regulator")
	b.login(reg, regulator)
	for _, id := range []string{"access", "interactions"} {
		require.False(t, b.evalBool(reg, fmt.Sprintf(`!!document.querySelector('#nav a[data-page=%q]')`, id)), "the regulator's menu has no %s", id)
	}
	require.True(t, b.evalBool(reg, `!!document.querySelector('#nav a[data-page="audit"]')`), "the regulator reads the audit trail")
	b.page(reg, "access")
	require.Contains(t, b.evalString(reg, `document.querySelector('[data-denied]').textContent`), "Not permitted")
	b.page(reg, "federation")
	b.waitJS(reg, "the cluster section is not permitted", `document.getElementById('page').textContent.includes('may not call ClusterService.Status')`)
	b.screenshot(reg, "regulator-federation")

	// A governance token of alpha: alpha alone.
	gov := b.tab("governance")
	b.login(gov, governance)
	b.page(gov, "members")
	b.waitJS(gov, "alpha is listed", `!!document.querySelector('#members-table tr[data-org="alpha"]')`)
	require.Equal(t, "1", b.evalString(gov, `String(document.querySelectorAll('#members-table tr[data-org]').length)`), "a governance token sees its organisation only")
	b.page(gov, "agreements")
	b.waitJS(gov, "alpha's agreement is listed", `document.querySelectorAll('#agreements-table tr[data-agreement]').length === 1`)
	require.False(t, b.evalBool(gov, `!!document.querySelector('#nav a[data-page="changes"]')`), "governance reads no admin changes")
	b.screenshot(gov, "governance-agreements")

	// A monitor: the public Federation views and the metrics, nothing else.
	mon := b.tab("monitor")
	b.login(mon, monitor)
	require.Equal(t, "federation interactions", b.evalString(mon, `[...document.querySelectorAll('#nav a')].map((a) => a.dataset.page).join(' ')`))
	b.page(mon, "federation")
	b.waitJS(mon, "the monitor sees the signed checkpoint", `!!document.querySelector('[data-field="tree-size"]')`)

	// A token revoked mid-session: the tab goes back to sign-in.
	tmp := b.tab("revoked")
	b.login(tmp, temp)
	b.page(tmp, "members")
	_, err = admin.Access().RevokeToken(ctxT(t), &trustfedv1.RevokeTokenRequest{TokenId: tempID, Reason: "dashboard test"})
	require.NoError(t, err)
	b.waitJS(tmp, "the revoked session is back at sign-in",
		`!document.getElementById('login-view').hidden && document.getElementById('login-error').textContent.startsWith('Signed out')`)
	require.Empty(t, b.evalString(tmp, `sessionStorage.getItem('trustfed.token') || ''`), "the revoked token is forgotten")

	require.Empty(t, b.consoleErrors(), "no console errors")

}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string { return fmt.Sprintf("%q", s) }
