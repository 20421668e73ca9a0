// Federation: cluster members, leader, Raft index, health and readiness,
// the newest signed checkpoint and its witnesses.
import {h, card, kv, badge, table, enumName, when, b64hex} from './dom.js';
import {api} from './api.js';
import {M, notPermitted} from './methods.js';

// plain fetches a public endpoint (health, readiness): status and body.
async function plain(path) {
  const r = await fetch(path, {cache: 'no-store'});
  return {status: r.status, text: (await r.text()).trim()};
}

export function federation() {
  let el;
  return {
    mount(root) { el = h('div'); root.append(el); },
    error(err) { el.replaceChildren(h('p', {class: 'error', role: 'alert'}, 'Could not load: ' + err.message)); },
    async refresh(ctx) {
      const [health, ready, sth, status] = await Promise.all([
        plain('/healthz'), plain('/readyz'), api('/v1/audit/sth').catch((e) => ({error: e.message})),
        ctx.may(M.Status) ? api('/v1/cluster/status') : null,
      ]);
      let rd = {};
      try { rd = JSON.parse(ready.text); } catch { rd = {reason: ready.text}; }
      const cards = [
        card('Health',
          kv([
            ['Registry index', h('span', {'data-field': 'index'}, String(ctx.index))],
            ['/healthz', health.status === 200 ? badge('ok', 'ok') : badge(health.text || String(health.status), 'bad')],
            ['/readyz', rd.ready ? badge('ready', 'ok') : badge(rd.reason || 'not ready', 'bad')],
            ['This node', `${rd.node_id || ''} (${rd.state || ''})`],
            ['Leader', rd.leader || '—'],
            ['Applied / commit', `${rd.applied_index ?? ''} / ${rd.commit_index ?? ''}`],
          ])),
        sth.error ? card('Last signed checkpoint', h('p', {class: 'error'}, sth.error)) :
          card('Last signed checkpoint', kv([
            ['Tree size', h('span', {'data-field': 'tree-size'}, String(sth.treeSize))],
            ['Root hash', h('code', null, b64hex(sth.rootHash))],
            ['Signed at', when(sth.time)],
            ['Origin', sth.origin],
            ['Log size', String(sth.logSize)],
            ['Witnesses', sth.witnesses && sth.witnesses.length ? h('ul', null, sth.witnesses.map((w) => h('li', null, w))) : 'none yet'],
          ])),
      ];
      let members = null;
      if (!status) {
        cards.unshift(card('Cluster', notPermitted(h, ctx.hello.role, M.Status)));
      } else {
        cards.unshift(card('Cluster', kv([
          ['Leader', status.leader ? status.leader.nodeId : 'none'],
          ['Term', String(status.term)],
          ['Commit / applied / last log', `${status.commitIndex} / ${status.appliedIndex} / ${status.lastLogIndex}`],
          ['Audit entries', String(status.auditSize)],
          ['Version', status.version],
        ])));
        members = card('Cluster members', table(`${(status.members || []).length} servers`, ['Node', 'Raft address', 'API address', 'Suffrage', 'State'],
          (status.members || []).map((m) => h('tr', null,
            h('th', {scope: 'row'}, m.nodeId), h('td', null, h('code', null, m.raftAddress)), h('td', null, h('code', null, m.apiAddress)),
            h('td', null, enumName(m.suffrage, 'SUFFRAGE_')),
            h('td', null, m.leader ? badge('leader', 'ok') : (m.caughtUp ? badge('caught up', 'ok') : badge('catching up', 'warn')))))));
      }
      el.replaceChildren(h('div', {class: 'grid'}, cards), members || '');
    },
  };
}
