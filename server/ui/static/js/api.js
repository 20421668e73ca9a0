// The REST API and the live feed, both with the session's bearer token in
// the Authorization header (never in a URL).

const KEY = 'trustfed.token';

export const session = {
  token: () => sessionStorage.getItem(KEY) || '',
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

// AuthError: the server does not accept the token (401).
export class AuthError extends Error {}

// APIError: any other refusal, with the HTTP status and the server's message.
export class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

let onAuthError = () => {};
// whenUnauthenticated sets what happens when any call gets a 401.
export function whenUnauthenticated(f) { onAuthError = f; }

// api calls the REST API: path with query, JSON body for writes.
export async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== '' && v !== null) url.searchParams.set(k, v);
  }
  const resp = await fetch(url, {headers: {Authorization: 'Bearer ' + session.token(), Accept: 'application/json'}, cache: 'no-store'});
  const body = await resp.json().catch(() => ({}));
  if (resp.status === 401) {
    const err = new AuthError(body.message || 'the token is not accepted');
    onAuthError(err);
    throw err;
  }
  if (!resp.ok) throw new APIError(resp.status, body.message || resp.statusText);
  return body;
}

// listAll follows next_page_token (at most pages pages) and concatenates field.
export async function listAll(path, field, params, pages = 20) {
  let out = [];
  let token = '';
  for (let i = 0; i < pages; i++) {
    const r = await api(path, {...params, pageSize: 500, pageToken: token});
    out = out.concat(r[field] || []);
    token = r.nextPageToken;
    if (!token) break;
  }
  return out;
}

// feed reads the server-sent events of GET /ui/events through fetch (an
// EventSource cannot send an Authorization header) and calls on[event] with
// each event's decoded data. It resolves when the stream ends; it throws
// AuthError on a 401.
export async function feed(token, on, signal) {
  const resp = await fetch('/ui/events', {headers: {Authorization: 'Bearer ' + token, Accept: 'text/event-stream'}, cache: 'no-store', signal});
  if (resp.status === 401) throw new AuthError((await resp.text()).trim() || 'the token is not accepted');
  if (!resp.ok) throw new APIError(resp.status, (await resp.text()).trim());
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length && on[event]) on[event](JSON.parse(data.join('\n')));
    }
  }
}
