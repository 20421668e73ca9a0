// Audit (tree heads, entries, inclusion proofs verified in the page,
// evidence export), Admin changes (with the CLI command that approves) and
// Access tokens.
import {h, card, kv, table, badge, enumName, when, b64hex, b64bytes} from './dom.js';
import {api, listAll} from './api.js';
import {M} from './methods.js';
import {verifyInclusion} from './merkle.js';

const SHOWN = 100;

export function audit() {
  let sthEl, listEl, typeIn, orgIn, sinceIn, sth = null;
  const verify = async (seq, out, btn) => {
    btn.disabled = true;
    out.replaceChildren(badge('verifying…', 'muted'));
    try {
      const p = await api('/v1/audit/proof/inclusion', {sequence: seq, treeSize: sth.treeSize});
      await verifyInclusion(b64bytes(p.leaf), Number(seq), Number(p.treeSize), (p.hashes || []).map(b64bytes), b64bytes(sth.rootHash));
      out.replaceChildren(badge(`verified in tree of ${p.treeSize}`, 'ok'));
      out.dataset.verified = 'yes';
    } catch (err) {
      out.replaceChildren(badge('NOT verified: ' + err.message, 'bad'));
      out.dataset.verified = 'no';
    } finally {
      btn.disabled = false;
    }
  };
  const filters = () => ({type: typeIn.value.trim(), organizationId: orgIn ? orgIn.value.trim() : '',
    since: sinceIn.value ? new Date(sinceIn.value).toISOString() : ''});
  const exportBundle = async () => {
    const records = await listAll('/v1/audit/entries', 'records', {...filters(), withProofs: true, treeSize: sth.treeSize});
    const blob = new Blob([JSON.stringify({signedTreeHead: sth, filters: filters(), records}, null, 1)], {type: 'application/json'});
    const a = h('a', {href: URL.createObjectURL(blob), download: `trustfed-audit-${sth.treeSize}.json`});
    document.body.append(a);
    a.click();
    a.remove();
  };
  const showHead = (head) => {
    sthEl.replaceChildren(kv([
      ['Tree size', h('span', {'data-field': 'tree-size'}, String(head.treeSize))],
      ['Root hash', h('code', null, b64hex(head.rootHash))],
      ['Signed at', when(head.time)],
      ['Cosigned by', (head.witnesses || []).join(', ') || 'no witness yet'],
      ['Verifier key', h('code', null, head.verifierKey || '')],
    ]));
  };
  // load reads the tree head and the entries: on opening the page, Filter
  // and Reload. The entries and the head their proofs are checked against
  // stay put until then, so a verification on screen is not wiped by the
  // next change; a change only updates the newest head and says so.
  const load = async () => {
    sth = await api('/v1/audit/sth');
    showHead(sth);
    newer.textContent = '';
    const recs = await listAll('/v1/audit/entries', 'records', filters(), 10);
    const shown = recs.slice(-SHOWN).reverse();
    listEl.replaceChildren(table(`Newest ${shown.length} of ${recs.length} entries`, ['#', 'Time', 'Type', 'Organisations', 'Principal', 'Inclusion proof'],
      shown.map((r) => {
        const e = r.entry || {};
        const out = h('span', {'data-proof': r.sequence});
        const inTree = Number(r.sequence) < Number(sth.treeSize);
        const btn = h('button', {type: 'button', class: 'link', disabled: !inTree, 'aria-label': `Verify the inclusion of entry ${r.sequence}`}, inTree ? 'verify' : 'after the checkpoint');
        btn.addEventListener('click', () => verify(r.sequence, out, btn));
        return h('tr', {'data-seq': r.sequence}, h('th', {scope: 'row'}, String(r.sequence)), h('td', null, when(e.time)),
          h('td', null, h('code', null, e.type)), h('td', null, (e.organizationIds || []).join(', ')), h('td', null, e.principal || ''),
          h('td', null, btn, ' ', out));
      }), {id: 'audit-table'}));
  };
  const newer = h('span', {class: 'muted', role: 'status'});
  return {
    mount(root, ctx) {
      typeIn = h('input', {id: 'audit-type', placeholder: 'e.g. DECISION'});
      orgIn = ctx.hello.organization ? null : h('input', {id: 'audit-org'});
      sinceIn = h('input', {id: 'audit-since', type: 'datetime-local'});
      sthEl = h('div');
      listEl = h('div');
      const since = new Date(Date.now() - 86400000).toISOString().slice(0, 19) + 'Z';
      root.append(h('div', {class: 'grid'}, card('Signed tree head', sthEl),
        card('Evidence',
          h('p', null, 'Download the entries shown by the filters with their inclusion proofs and the tree head (JSON), or export the AG-783 bundle (E01–E07) with the CLI:'),
          h('button', {type: 'button', id: 'audit-export', onclick: exportBundle}, 'Export entries with proofs'),
          h('code', {class: 'cmd'}, `trustfed audit export --compliance soc2 --since ${since} --until ${new Date().toISOString().slice(0, 19)}Z` +
            (ctx.hello.organization ? ` --org ${ctx.hello.organization}` : '')))),
      h('form', {class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); load(); }},
        h('label', {for: 'audit-type'}, 'Type', typeIn),
        orgIn ? h('label', {for: 'audit-org'}, 'Organisation', orgIn) : '',
        h('label', {for: 'audit-since'}, 'Since', sinceIn),
        h('button', {type: 'submit'}, 'Filter / reload'), newer),
      listEl,
      h('p', {class: 'muted'}, 'Proofs are checked in this page (RFC 6962 hashing with WebCrypto SHA-256) against the signed tree head\'s root.'));
    },
    error(err) { listEl.replaceChildren(h('p', {class: 'error', role: 'alert'}, 'Could not load: ' + err.message)); },
    loaded: false,
    async refresh() {
      if (!this.loaded) { this.loaded = true; return load(); }
      const head = await api('/v1/audit/sth');
      if (sth && head.treeSize !== sth.treeSize) {
        newer.textContent = `The log has grown to ${head.treeSize} entries: reload to see them.`;
      }
    },
  };
}

const changeTone = {ADMIN_CHANGE_STATUS_PENDING: 'warn', ADMIN_CHANGE_STATUS_APPLIED: 'ok'};

// what says in a few words what an admin change does.
function what(c) {
  const content = c.content || {};
  const kind = Object.keys(content).find((k) => !['reason', 'nonce', 'expireTime'].includes(k)) || 'change';
  const v = content[kind] || {};
  const detail = Object.entries(v).filter(([, x]) => typeof x !== 'object').map(([k, x]) => `${k}=${x}`).join(' ');
  return `${kind} ${detail}`.trim();
}

export function changes() {
  let el;
  return {
    mount(root) { el = h('div'); root.append(el); },
    error(err) { el.replaceChildren(h('p', {class: 'error', role: 'alert'}, 'Could not load: ' + err.message)); },
    async refresh(ctx) {
      const cs = (await listAll('/v1/admin/changes', 'changes')).sort((a, b) => Number(b.createIndex) - Number(a.createIndex));
      const pending = cs.filter((c) => c.status === 'ADMIN_CHANGE_STATUS_PENDING');
      el.replaceChildren(
        card(`Pending (${pending.length})`, pending.length ? pending.map((c) => h('div', {'data-change': c.id},
          h('p', null, h('strong', null, what(c)), ` — ${(c.content || {}).reason || ''} (proposed by ${c.proposer}, ${(c.approvals || []).length} of ${c.approvalsRequired} approvals)`),
          h('p', null, ctx.hello.role === 'admin' ? 'Approve with your admin key, on your machine (the key never reaches the browser):' : 'An admin approves it with:'),
          h('code', {class: 'cmd', 'data-command': c.id}, `trustfed admin approve ${c.id}`))) : h('p', {class: 'muted'}, 'No change waits for approval.')),
        table(`${cs.length} admin changes`, ['Change', 'What', 'Status', 'Approvals', 'Proposed'],
          cs.map((c) => h('tr', null, h('th', {scope: 'row'}, h('code', null, c.id)), h('td', null, what(c)),
            h('td', null, badge(enumName(c.status, 'ADMIN_CHANGE_STATUS_'), changeTone[c.status])),
            h('td', null, `${(c.approvals || []).map((a) => a.adminId).join(', ')} (${(c.approvals || []).length}/${c.approvalsRequired})`),
            h('td', null, `${when(c.proposeTime)} by ${c.proposer}`)))));
    },
  };
}

export function access() {
  let el;
  return {
    mount(root) { el = h('div'); root.append(el); },
    error(err) { el.replaceChildren(h('p', {class: 'error', role: 'alert'}, 'Could not load: ' + err.message)); },
    async refresh() {
      const ts = await listAll('/v1/tokens', 'tokens');
      el.replaceChildren(table(`${ts.length} tokens`, ['Token', 'Role', 'Organisation', 'Description', 'Expires', 'State'],
        ts.map((t) => h('tr', null, h('th', {scope: 'row'}, h('code', null, t.id)), h('td', null, enumName(t.role, 'TOKEN_ROLE_')),
          h('td', null, t.organizationId || '—'), h('td', null, t.description || ''), h('td', null, when(t.expireTime)),
          h('td', null, t.revokeTime ? badge('revoked', 'bad') : (new Date(t.expireTime) < new Date() ? badge('expired', 'muted') : badge('usable', 'ok')))))),
      h('p', {class: 'muted'}, 'Tokens are created and revoked with the CLI: trustfed token create / trustfed token revoke.'));
    },
  };
}

export {M};
