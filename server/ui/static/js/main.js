// The dashboard's shell: sign-in, the live feed, the page list the token's
// role may read (from the server's authorisation table) and the router.
import {h} from './dom.js';
import {session, feed, AuthError, whenUnauthenticated} from './api.js';
import {pages} from './pages.js';

const $ = (id) => document.getElementById(id);

// state of the signed-in session.
const st = {
  hello: null,       // the feed's hello: principal, role, organisation, methods
  index: 0,          // the registry's Raft index, from the feed
  samples: [],       // metrics samples (admin, monitor), newest last
  abort: null,       // ends the feed
  current: null,     // the mounted page
  loading: false, dirty: false,
  timer: null,       // a load deferred by MIN_GAP
};

// ctx is what pages read.
const ctx = {
  get hello() { return st.hello; },
  get index() { return st.index; },
  get samples() { return st.samples; },
  may: (method) => !!st.hello && st.hello.methods.includes(method),
};

const allowed = (p) => p.needs.every((n) => (n === 'metrics' ? st.hello.metrics : ctx.may(n)));

function showLogin(message) {
  if (st.abort) st.abort.abort();
  st.abort = null; st.hello = null; st.current = null;
  session.clear();
  $('app-view').hidden = true;
  $('who').hidden = true;
  $('login-view').hidden = false;
  $('login-error').textContent = message || '';
  document.title = 'trustfed — sign in';
  $('token').value = '';
  $('token').focus();
}

// connect opens the feed with token; it resolves once the hello arrives and
// rejects with the reason when the server refuses the token.
function connect(token) {
  const abort = new AbortController();
  return new Promise((resolve, reject) => {
    let helloSeen = false;
    const on = {
      hello: (m) => { helloSeen = true; st.hello = m; st.index = m.index; resolve(); },
      change: (m) => { st.index = m.index; live(true); refresh(); },
      metrics: (m) => { st.samples.push(m); if (st.samples.length > 301) st.samples.shift(); if (st.current && st.current.onMetrics) st.current.onMetrics(ctx); },
      unauthenticated: (m) => { helloSeen = true; showLogin('Signed out: ' + m.message); },
    };
    const run = async (delay) => {
      for (;;) {
        try {
          await feed(token, on, abort.signal);
        } catch (err) {
          if (abort.signal.aborted) return;
          if (err instanceof AuthError) {
            if (!helloSeen) reject(err); else showLogin('Signed out: ' + err.message);
            return;
          }
          if (!helloSeen) { reject(err); return; }
        }
        if (abort.signal.aborted || st.abort !== abort) return;
        // The stream ended (server restart, network): reconnect with backoff.
        live(false);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 10000);
        if (abort.signal.aborted) return;
      }
    };
    st.abort = abort;
    run(1000);
  });
}

function live(on) {
  $('live').textContent = on ? `live · index ${st.index}` : 'reconnecting…';
  $('live').classList.toggle('on', on);
}

async function signIn(token) {
  $('login-error').textContent = '';
  try {
    await connect(token);
  } catch (err) {
    if (st.abort) st.abort.abort();
    st.abort = null;
    session.clear();
    $('login-error').textContent = (err instanceof AuthError ? 'The server refused this token: ' : 'Could not sign in: ') + err.message;
    $('login-view').hidden = false;
    return;
  }
  session.set(token);
  const hl = st.hello;
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('who').hidden = false;
  $('principal').textContent = `${hl.principal} · ${hl.role}${hl.organization ? ' of ' + hl.organization : ''}`;
  document.body.dataset.role = hl.role;
  live(true);
  buildNav();
  route();
}

function buildNav() {
  $('nav').replaceChildren(...pages.filter(allowed).map((p) =>
    h('li', null, h('a', {href: '#' + p.id, 'data-page': p.id}, p.title))));
}

// route mounts the page the location's hash names.
function route() {
  if (!st.hello) return;
  const id = location.hash.slice(1) || 'federation';
  const page = pages.find((p) => p.id === id) || pages[0];
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === page.id) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  $('page-title').textContent = page.title;
  document.title = `trustfed — ${page.title}`;
  const el = $('page');
  el.dataset.page = page.id;
  if (!allowed(page)) {
    st.current = null;
    const missing = page.needs.filter((n) => (n === 'metrics' ? !st.hello.metrics : !ctx.may(n)));
    el.replaceChildren(h('p', {class: 'denied', role: 'alert', 'data-denied': page.id},
      `Not permitted: the ${st.hello.role} role may not read this page (it needs ${missing.map(short).join(', ')}).`));
    return;
  }
  st.current = page.create();
  el.replaceChildren();
  st.current.mount(el, ctx);
  refresh();
}

// short names a method or need for people: "AccessService.ListTokens".
function short(m) { return m === 'metrics' ? 'GET /metrics' : m.replace(/^\/trustfed\.v1\./, '').replace('/', '.'); }

// MIN_GAP is the least time between two loads of a page: a busy registry
// applies commands all the time, a page needs to follow, not to reload for each.
const MIN_GAP = 1000;

// refresh reloads the mounted page's data, one load at a time and at most
// once per MIN_GAP (a change notice in between is kept for the next load).
async function refresh() {
  const page = st.current;
  if (!page || !page.refresh) return;
  if (st.loading) { st.dirty = true; return; }
  const wait = (page.lastLoad || 0) + MIN_GAP - Date.now();
  if (wait > 0) {
    if (!st.timer) st.timer = setTimeout(() => { st.timer = null; refresh(); }, wait);
    return;
  }
  page.lastLoad = Date.now();
  st.loading = true;
  try {
    await page.refresh(ctx);
    if (page === st.current) $('page').dataset.index = String(st.index);
  } catch (err) {
    if (!(err instanceof AuthError) && page === st.current && page.error) page.error(err);
  } finally {
    st.loading = false;
    if (st.dirty) { st.dirty = false; refresh(); }
  }
}

whenUnauthenticated((err) => showLogin('Signed out: ' + err.message));
window.addEventListener('hashchange', () => { route(); $('content').focus(); });
document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', (e) => { e.preventDefault(); signIn($('token').value.trim()); });
  $('logout').addEventListener('click', () => showLogin('Signed out.'));
  const saved = session.token();
  if (saved) signIn(saved); else showLogin('');
});
