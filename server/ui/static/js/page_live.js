// Interactions (checks per second, deny reasons, latency percentiles, from
// the feed's metrics samples) and Revocations (cascade timelines, refreshed
// by the feed's change notices).
import {h, card, kv, table, badge, enumName, when} from './dom.js';
import {listAll} from './api.js';
import {lines, bars, levelNames, levelColor} from './charts.js';

const BOUND_MS = 300 * 1000; // AG-783: every partner acknowledges within 300 s

// quantile estimates q from a cumulative histogram (Prometheus-style linear
// interpolation inside the bucket).
export function quantile(q, bounds, counts) {
  const total = counts.length ? counts[counts.length - 1] : 0;
  if (!total) return NaN;
  const rank = q * total;
  let prevB = 0, prevC = 0;
  for (let i = 0; i < bounds.length; i++) {
    if (counts[i] >= rank) {
      const inBucket = counts[i] - prevC;
      return prevB + (bounds[i] - prevB) * (inBucket ? (rank - prevC) / inBucket : 0);
    }
    prevB = bounds[i]; prevC = counts[i];
  }
  return bounds[bounds.length - 1];
}

const ms = (sec) => (isNaN(sec) ? '—' : (sec * 1000).toFixed(2) + ' ms');

export function interactions() {
  let el;
  const render = (ctx) => {
    const ss = ctx.samples;
    if (ss.length < 2) { el.replaceChildren(h('p', {class: 'muted'}, 'Collecting samples from the live feed…')); return; }
    const sum = (x, pre) => Object.entries(x.decisions).filter(([k]) => k === pre || k.startsWith(pre + '/')).reduce((n, [, v]) => n + v, 0);
    const allow = [], deny = [];
    for (let i = 1; i < ss.length; i++) {
      const dt = (ss[i].time - ss[i - 1].time) / 1000 || 1;
      allow.push([ss[i].time, (sum(ss[i], 'allow') - sum(ss[i - 1], 'allow')) / dt]);
      deny.push([ss[i].time, (sum(ss[i], 'deny') - sum(ss[i - 1], 'deny')) / dt]);
    }
    const first = ss[0], last = ss[ss.length - 1];
    const minutes = ((last.time - first.time) / 60000).toFixed(1);
    const reasons = Object.keys(last.decisions).filter((k) => k.startsWith('deny/'))
      .map((k) => [k.slice(5), (last.decisions[k] || 0) - (first.decisions[k] || 0), last.decisions[k]]).sort((a, b) => b[1] - a[1]);
    const lb = last.latency || {}, fb = first.latency || {};
    const win = (lb.counts || []).map((c, i) => c - ((fb.counts || [])[i] || 0));
    el.replaceChildren(
      card('Checks per second', lines(`Checks per second by result, last ${minutes} min`,
        [{name: 'allow', color: '#1a7f37', points: allow}, {name: 'deny', color: '#b42318', points: deny}], '/s')),
      h('div', {class: 'grid'},
        card('Decision latency (CheckInteraction)', kv([
          [`p50, last ${minutes} min`, ms(quantile(0.5, lb.bounds || [], win))],
          [`p90, last ${minutes} min`, ms(quantile(0.9, lb.bounds || [], win))],
          [`p99, last ${minutes} min`, ms(quantile(0.99, lb.bounds || [], win))],
          ['checks since start', h('span', {'data-field': 'checks'}, String(lb.count || 0))],
        ])),
        card('Effective level of checks', (() => {
          const counts = [0, 1, 2, 3, 4].map((l) => ((last.levels || {})[l] || 0) - ((first.levels || {})[l] || 0));
          return [bars(`Checks by effective level, last ${minutes} min`, counts.map((n, l) => [levelNames[l], n, levelColor(l)])),
            h('p', {class: 'muted'}, 'In the window: ', h('span', {'data-field': 'levels-total'}, String(counts.reduce((a, b) => a + b, 0))), ' checks.')];
        })()),
        card('Denials by reason', table(`Denials by first reason code, last ${minutes} min`, ['Reason', 'In window', 'Since start'],
          reasons.map(([r, n, all]) => h('tr', {'data-reason': r}, h('th', {scope: 'row'}, h('code', null, r || '(none)')), h('td', null, String(n)), h('td', null, String(all))))))),
      h('p', {class: 'muted'}, 'From this node\'s metrics (the same as GET /metrics), pushed each second by the live feed.'));
  };
  return {
    mount(root, ctx) { el = h('div'); root.append(el); render(ctx); },
    onMetrics(ctx) { render(ctx); },
  };
}

const seconds = (a, b) => ((new Date(b) - new Date(a)) / 1000).toFixed(2) + ' s';

function timeline(c) {
  const start = new Date(c.startTime);
  const at = (ts) => (ts ? new Date(ts) - start : null);
  const rows = (c.deliveries || []).map((d) => {
    const ack = at(d.ackTime), esc = at(d.escalateTime), last = at(d.lastAttemptTime);
    const end = ack ?? last ?? at(d.dispatchTime) ?? 0;
    const span = h('div', {class: 'span' + (ack !== null ? ' acked' : '') + (esc !== null ? ' escalated' : '')});
    span.style.left = '0%';
    span.style.width = Math.min(100, (100 * end) / BOUND_MS).toFixed(3) + '%';
    const track = h('div', {class: 'track', role: 'img', 'aria-label': `${d.organizationId}: ${ack !== null ? 'acknowledged after ' + (ack / 1000).toFixed(2) + ' s' : 'not acknowledged yet'} of the 300 s bound`},
      span, h('div', {class: 'bound'}));
    const state = ack !== null ? `acked after ${(ack / 1000).toFixed(2)} s` : 'waiting';
    const note = [state, `${d.attempts || 0} attempt${d.attempts === 1 ? '' : 's'}`, d.channel && d.channel !== 'DELIVERY_CHANNEL_UNSPECIFIED' ? enumName(d.channel, 'DELIVERY_CHANNEL_') : '',
      esc !== null ? `escalated at ${(esc / 1000).toFixed(1)} s` : '', d.lastError && ack === null ? 'last error: ' + d.lastError : ''].filter(Boolean).join(' · ');
    const cls = esc !== null ? 'row-escalated' : '';
    return [h('div', {class: cls, 'data-partner': d.organizationId, 'data-acked': ack !== null ? 'yes' : 'no'}, d.organizationId), track, h('div', {class: cls}, note)];
  });
  const scale = [h('div', {class: 'muted'}, 'Partner'), h('div', {class: 'scale muted'}, h('span', null, '0 s'), h('span', null, '300 s bound')), h('div', {class: 'muted'}, 'Delivery')];
  return h('div', {class: 'timeline', role: 'group', 'aria-label': 'Partner deliveries against the 300 s bound'}, scale, rows);
}

export function revocations() {
  let el;
  return {
    mount(root) { el = h('div', {id: 'cascades'}); root.append(el); },
    error(err) { el.replaceChildren(h('p', {class: 'error', role: 'alert'}, 'Could not load: ' + err.message)); },
    async refresh() {
      const cs = (await listAll('/v1/revocations', 'cascades')).sort((a, b) => Number(b.createIndex) - Number(a.createIndex));
      if (!cs.length) { el.replaceChildren(h('p', {class: 'muted'}, 'No cascades yet. A revocation, suspension or agreement termination starts one.')); return; }
      el.replaceChildren(...cs.map((c) => {
        const done = !!c.completeTime;
        const escalated = (c.deliveries || []).some((d) => d.escalateTime);
        const total = (c.deliveries || []).length;
        const ev = c.event || {};
        return h('article', {class: 'card', 'data-cascade': c.id, 'data-state': done ? 'complete' : 'running', 'aria-label': `Cascade ${c.id}`},
          h('h3', null, `${enumName(ev.kind, 'EVENT_KIND_')} of ${ev.organizationId} `,
            done ? badge('complete', 'ok') : badge('running', 'warn'), escalated ? [' ', badge('escalated', 'bad')] : ''),
          kv([
            ['Cascade', h('code', null, c.id)],
            ['Reason', ev.reason || ''],
            ['Started', when(c.startTime)],
            ['Acknowledged', h('span', {'data-field': 'acked'}, `${c.acked || 0} of ${total}`)],
            ['Completed', done ? `${when(c.completeTime)} (${seconds(c.startTime, c.completeTime)} after the start)` : '—'],
          ]),
          timeline(c));
      }));
    },
  };
}
