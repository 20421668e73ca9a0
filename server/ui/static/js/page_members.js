// Members (organisations, levels and what caps them) and Agreements (the
// agreement graph).
import {h, s, card, table, badge, enumName, when} from './dom.js';
import {api, listAll} from './api.js';
import {M, notPermitted} from './methods.js';
import {bars, levelNames, levelColor} from './charts.js';

// federationView reads what levels are computed from: organisations,
// issuers and the federation policy (each as far as the role may read).
async function federationView(ctx) {
  const [orgs, issuers, policy] = await Promise.all([
    ctx.may(M.ListOrganizations) ? listAll('/v1/organizations', 'organizations') : [],
    ctx.may(M.ListIssuers) ? api('/v1/issuers').then((r) => r.issuers || []) : [],
    ctx.may(M.GetFederationPolicy) ? api('/v1/federation/policy').then((r) => r.policy || {}) : {},
  ]);
  return {orgs, issuers: new Map(issuers.map((i) => [i.id, i])), policy};
}

// level mirrors the registry's OrganizationLevel (registry/state/level.go):
// min(declared, what a valid passport from an accredited issuer attests,
// the onboarding cap while onboarding), with the binding cap named. A
// revoked passport shows only in checks: the registry decides every check.
export function level(o, view, now = new Date()) {
  const caps = [['declared', o.declaredLevel || 0]];
  const p = o.passport;
  let attested = 0;
  if (p && p.serial) {
    const iss = view.issuers.get(p.issuerId);
    const valid = (!p.notBefore || new Date(p.notBefore) <= now) && (!p.expireTime || now < new Date(p.expireTime));
    if (iss && iss.status === 'ISSUER_STATUS_ACCREDITED' && valid) attested = Math.min(p.level || 0, iss.maxLevel || 0);
  }
  caps.push(['passport', attested]);
  if (o.onboardingUntil && now < new Date(o.onboardingUntil) && !o.onboardingOverride) {
    caps.push(['onboarding cap', view.policy.onboardingCapLevel || 0]);
  }
  const lv = Math.min(...caps.map((c) => c[1]));
  const binding = caps.filter((c) => c[1] === lv).map((c) => c[0]);
  return {level: lv, attested, binding};
}

const statusTone = {ORGANIZATION_STATUS_ACTIVE: 'ok', ORGANIZATION_STATUS_REVOKED: 'bad', ORGANIZATION_STATUS_SUSPENDED: 'warn'};

export function members() {
  let data = null;
  let body, chart, q, statusSel;
  const render = () => {
    if (!data) return;
    const term = q.value.trim().toLowerCase();
    const want = statusSel.value;
    const shown = data.orgs.filter((o) => (!want || o.status === want) &&
      (!term || [o.id, o.name, o.jurisdiction].some((v) => String(v || '').toLowerCase().includes(term))));
    const counts = [0, 0, 0, 0, 0];
    const rows = shown.map((o) => {
      const l = level(o, data);
      counts[l.level]++;
      return h('tr', {'data-org': o.id},
        h('th', {scope: 'row'}, o.id), h('td', null, o.name),
        h('td', null, badge(enumName(o.status, 'ORGANIZATION_STATUS_'), statusTone[o.status])),
        h('td', null, String(o.declaredLevel || 0)), h('td', null, String(l.attested)),
        h('td', {'data-field': 'level'}, String(l.level)), h('td', null, l.binding.join(', ')),
        h('td', null, o.jurisdiction || ''));
    });
    chart.replaceChildren(bars(`Effective level of ${shown.length} organisations`, counts.map((n, i) => [levelNames[i], n, levelColor(i)])));
    body.replaceChildren(table(`${shown.length} of ${data.orgs.length} organisations`,
      ['Organisation', 'Name', 'Status', 'Declared', 'Attested', 'Effective', 'Capped by', 'Jurisdiction'], rows, {id: 'members-table'}));
  };
  return {
    mount(root) {
      q = h('input', {type: 'search', id: 'member-search', oninput: render});
      statusSel = h('select', {id: 'member-status', onchange: render}, h('option', {value: ''}, 'any'),
        ['ACTIVE', 'PENDING', 'SUSPENDED', 'REVOKED'].map((v) => h('option', {value: 'ORGANIZATION_STATUS_' + v}, v.toLowerCase())));
      chart = h('div');
      body = h('div');
      root.append(h('div', {class: 'filters', role: 'search'},
        h('label', {for: 'member-search'}, 'Search id, name, jurisdiction', q),
        h('label', {for: 'member-status'}, 'Status', statusSel)),
      h('div', {class: 'grid'}, card('Level distribution', chart)), body,
      h('p', {class: 'muted'}, 'Effective level = min(declared, passport-attested, onboarding cap while onboarding), as the registry computes it for every check.'));
    },
    error(err) { body.replaceChildren(h('p', {class: 'error', role: 'alert'}, 'Could not load: ' + err.message)); },
    async refresh(ctx) { data = await federationView(ctx); render(); },
  };
}

const agreementTone = {AGREEMENT_STATUS_ACTIVE: 'ok', AGREEMENT_STATUS_TERMINATED: 'bad', AGREEMENT_STATUS_PENDING: 'warn'};

export function agreements() {
  let graphEl, partnersEl, tableEl, selected = '';
  let ctxRef;
  const showPartners = async (org) => {
    selected = org;
    for (const n of graphEl.querySelectorAll('.graph-node')) n.classList.toggle('selected', n.dataset.org === org);
    if (!ctxRef.may(M.GetOrganizationGraph)) {
      partnersEl.replaceChildren(notPermitted(h, ctxRef.hello.role, M.GetOrganizationGraph));
      return;
    }
    try {
      const g = await api(`/v1/organizations/${encodeURIComponent(org)}/graph`);
      partnersEl.replaceChildren(table(`Partners of ${org} (the pre-computed notification graph)`, ['Partner', 'Agreements', 'Open sessions'],
        (g.partners || []).map((p) => h('tr', {'data-partner': p.organizationId}, h('th', {scope: 'row'}, p.organizationId),
          h('td', null, (p.agreementIds || []).join(', ')), h('td', null, (p.sessionIds || []).join(', ') || '—')))));
    } catch (err) {
      partnersEl.replaceChildren(h('p', {class: 'error', role: 'alert'}, err.message));
    }
  };
  return {
    mount(root) {
      graphEl = h('div');
      partnersEl = h('div', {'aria-live': 'polite'}, h('p', {class: 'muted'}, 'Select an organisation in the graph for its partners.'));
      tableEl = h('div');
      root.append(h('div', {class: 'grid'}, card('Agreement graph', graphEl), card('Partners', partnersEl)), tableEl);
    },
    error(err) { tableEl.replaceChildren(h('p', {class: 'error', role: 'alert'}, 'Could not load: ' + err.message)); },
    async refresh(ctx) {
      ctxRef = ctx;
      const [ags, view] = await Promise.all([listAll('/v1/agreements', 'agreements'), federationView(ctx)]);
      const byId = new Map(view.orgs.map((o) => [o.id, o]));
      const lv = (id) => (byId.has(id) ? level(byId.get(id), view).level : null);
      const minLevel = (a) => {
        const la = lv(a.organizationAId), lb = lv(a.organizationBId);
        return la === null || lb === null ? null : Math.min(la, lb);
      };
      graphEl.replaceChildren(graph(ags, minLevel, showPartners));
      tableEl.replaceChildren(table(`${ags.length} agreements`, ['Agreement', 'Parties', 'Status', 'Actions', 'Until', 'Interaction level'],
        ags.map((a) => h('tr', {'data-agreement': a.id},
          h('th', {scope: 'row'}, h('code', null, a.id)), h('td', null, `${a.organizationAId} ↔ ${a.organizationBId}`),
          h('td', null, badge(enumName(a.status, 'AGREEMENT_STATUS_'), agreementTone[a.status])),
          h('td', null, ((a.parsedTerms && a.parsedTerms.scope && a.parsedTerms.scope.allowedActions) || []).join(', ')),
          h('td', null, when(a.parsedTerms && a.parsedTerms.notAfter)),
          h('td', null, minLevel(a) === null ? '—' : levelNames[minLevel(a)]))), {id: 'agreements-table'}));
      if (selected) showPartners(selected);
    },
  };
}

// graph draws organisations on a circle and agreements as edges coloured by
// the level interactions under them get (min of the parties'); pending and
// terminated agreements are dashed grey. Nodes are keyboard-focusable buttons.
function graph(ags, minLevel, select) {
  const ids = [...new Set(ags.flatMap((a) => [a.organizationAId, a.organizationBId]))].sort();
  const W = 520, H = 380, R = Math.min(W, H) / 2 - 50;
  const pos = new Map(ids.map((id, i) => {
    const t = (2 * Math.PI * i) / Math.max(1, ids.length) - Math.PI / 2;
    return [id, [W / 2 + R * Math.cos(t), H / 2 + R * Math.sin(t)]];
  }));
  const svg = s('svg', {class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'group', 'aria-label': `Agreement graph: ${ids.length} organisations, ${ags.length} agreements`});
  for (const a of ags) {
    const [x1, y1] = pos.get(a.organizationAId), [x2, y2] = pos.get(a.organizationBId);
    const active = a.status === 'AGREEMENT_STATUS_ACTIVE';
    const l = minLevel(a);
    svg.append(s('line', {x1, y1, x2, y2, stroke: active && l !== null ? levelColor(l) : '#8c959f', 'stroke-width': active ? 3 : 1.5,
      'stroke-dasharray': active ? null : '5 4', 'data-edge': a.id}, s('title', null, `${a.id}: ${a.organizationAId} ↔ ${a.organizationBId}`)));
  }
  for (const id of ids) {
    const [x, y] = pos.get(id);
    const node = s('g', {class: 'graph-node', tabindex: 0, role: 'button', 'data-org': id, 'aria-label': `Organisation ${id}: show partners`,
      onclick: () => select(id), onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select(id); } }},
    s('circle', {cx: x, cy: y, r: 9}), s('text', {x, y: y + (y < H / 2 ? -14 : 24), 'text-anchor': 'middle'}, id));
    svg.append(node);
  }
  const legend = h('div', {class: 'legend'}, levelNames.map((n, i) => h('span', {style: `--c:${levelColor(i)}`}, n)),
    h('span', {style: '--c:#8c959f'}, 'pending / terminated'));
  return h('figure', null, svg, legend);
}
