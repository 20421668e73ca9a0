// Small DOM helpers: every text goes in through textContent, never as HTML.

// h builds an element: h('td', {class: 'x'}, 'text', child, ...).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';

// s builds an SVG element the same way.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'style') el.style.cssText = v; // CSSOM: allowed by the page's CSP, a style attribute is not
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// table builds an accessible table: caption, header row, rows of cells.
export function table(caption, headers, rows, attrs) {
  return h('div', {class: 'table-wrap'}, h('table', attrs,
    h('caption', null, caption),
    h('thead', null, h('tr', null, headers.map((t) => h('th', {scope: 'col'}, t)))),
    h('tbody', null, rows)));
}

// card is a titled section.
export function card(title, ...children) {
  return h('section', {class: 'card', 'aria-label': title}, h('h3', null, title), ...children);
}

// kv is a definition list of [term, value] pairs.
export function kv(pairs) {
  return h('dl', {class: 'kv'}, pairs.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

// badge is a small coloured label; tone is ok, bad, warn or muted.
export function badge(text, tone) {
  return h('span', {class: 'badge ' + (tone || 'muted')}, text);
}

// enumName turns "ORGANIZATION_STATUS_ACTIVE" into "active".
export function enumName(v, prefix) {
  if (v === undefined || v === null) return '';
  return String(v).replace(prefix, '').toLowerCase().replaceAll('_', ' ');
}

// when formats a protobuf JSON timestamp ("" for none).
export function when(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

// b64hex turns base64 (protobuf JSON bytes) into hex.
export function b64hex(b64) {
  return Array.from(b64bytes(b64), (b) => b.toString(16).padStart(2, '0')).join('');
}

// b64bytes decodes base64 (standard or URL alphabet) into bytes.
export function b64bytes(b64) {
  const bin = atob(String(b64 || '').replaceAll('-', '+').replaceAll('_', '/'));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
