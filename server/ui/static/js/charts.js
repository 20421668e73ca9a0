// Plain SVG charts, each with a text alternative.
import {s, h} from './dom.js';

export const levelNames = ['0 untrusted', '1 verified', '2 attested', '3 trusted', '4 privileged'];
const LEVEL_COLORS = ['#6e7781', '#8250df', '#0969da', '#1a7f37', '#9a6700'];
export const levelColor = (l) => LEVEL_COLORS[Math.max(0, Math.min(4, l | 0))];

// bars draws a vertical bar chart of [label, value, colour] and titles it.
export function bars(title, data) {
  const w = 480, hgt = 200, pad = 28, bw = (w - pad * 2) / Math.max(1, data.length);
  const max = Math.max(1, ...data.map((d) => d[1]));
  const svg = s('svg', {class: 'chart', viewBox: `0 0 ${w} ${hgt + 40}`, role: 'img', 'aria-label': title + ': ' + data.map((d) => `${d[0]} ${d[1]}`).join(', ')});
  data.forEach(([label, v, color], i) => {
    const bh = (hgt - pad) * v / max;
    const x = pad + i * bw + 6;
    svg.append(s('rect', {x, y: hgt - bh, width: bw - 12, height: bh, fill: color || '#0969da'}),
      s('text', {x: x + (bw - 12) / 2, y: hgt - bh - 4, 'text-anchor': 'middle'}, String(v)),
      s('text', {x: x + (bw - 12) / 2, y: hgt + 16, 'text-anchor': 'middle'}, label));
  });
  svg.append(s('line', {x1: pad, x2: w - pad, y1: hgt, y2: hgt, stroke: 'currentColor'}));
  return svg;
}

// lines draws series over time: {name, color, points: [[t, v]]}.
export function lines(title, series, unit) {
  const w = 600, hgt = 200, pad = 36;
  const all = series.flatMap((x) => x.points);
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
  const max = Math.max(1, ...all.map((p) => p[1]));
  const X = (t) => pad + (w - 2 * pad) * (t1 > t0 ? (t - t0) / (t1 - t0) : 1);
  const Y = (v) => hgt - (hgt - 10) * v / max;
  const last = series.map((x) => `${x.name} ${x.points.length ? x.points[x.points.length - 1][1].toFixed(1) : 0}${unit}`).join(', ');
  const svg = s('svg', {class: 'chart', viewBox: `0 0 ${w} ${hgt + 30}`, role: 'img', 'aria-label': `${title}; latest: ${last}`});
  svg.append(s('line', {x1: pad, x2: w - pad, y1: hgt, y2: hgt, stroke: 'currentColor'}),
    s('text', {x: 2, y: 14}, max.toFixed(1) + unit), s('text', {x: 2, y: hgt}, '0'));
  for (const x of series) {
    if (!x.points.length) continue;
    const d = x.points.map((p, i) => `${i ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ');
    svg.append(s('path', {d, fill: 'none', stroke: x.color, 'stroke-width': 2}));
  }
  const legend = h('div', {class: 'legend'}, series.map((x) => h('span', {style: `--c:${x.color}`}, x.name)));
  return h('figure', null, svg, h('figcaption', {class: 'muted'}, title), legend);
}
