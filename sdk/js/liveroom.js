// liveroom JavaScript SDK: joins a room through dispatch, follows it on a
// gateway WebSocket and sends through the uplink, doing every client duty of
// docs/PROTOCOL.md ("Client duties"): wait answers, reconnect with since= and
// the dispatch backoff, reconnect frames, de-duplication, liveness.
// One ES module, no dependency, no build step. The liveroom server serves
// this very file at /static/liveroom.js; the npm package is sdk/js.

export const VERSION = '0.1.0';

const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
// Codes after which reconnecting would only fail again.
const FATAL_CODES = { banned: 1, forbidden: 1, invalid_room: 1 };
const DEFAULT_POLICY = { base_ms: 500, max_ms: 15000, jitter: 0.5 }; // dispatch's defaults

/**
 * ApiError is every error the SDK reports: an HTTP answer's JSON error
 * {"error":{code,message,field,retry_after_ms}}, a gateway's error frame
 * (frame true) or a network failure (status 0, code "network").
 */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    const e = (body && body.error) || {};
    super(e.message || fallback || ('HTTP ' + status));
    this.name = 'ApiError';
    this.status = status || 0;
    this.code = e.code || (status ? 'http_' + status : 'network');
    this.field = e.field || '';
    this.retryAfterMs = Number(e.retry_after_ms) || 0;
    this.frame = false;
  }
}

/** describeError is a sentence a person can act on. */
export function describeError(err) {
  if (!(err instanceof ApiError) || err.code === 'network') return 'Network error — check your connection.';
  let m = err.message;
  if (err.status === 429) {
    m = 'Slow down — ' + m;
    if (err.retryAfterMs) m += ' (try again in ' + Math.ceil(err.retryAfterMs / 1000) + ' s)';
  }
  return m;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function randomHex(bytes) {
  const a = new Uint8Array(bytes);
  globalThis.crypto.getRandomValues(a);
  return Array.from(a, (b) => (b + 0x100).toString(16).slice(1)).join('');
}

/**
 * uuid4 is a random UUID for Idempotency-Key. crypto.randomUUID exists only
 * in secure contexts, and a demo on http://<lan-ip>:8080 is not one.
 */
export function uuid4() {
  const h = randomHex(16).split('');
  h[12] = '4';
  h[16] = '89ab'[parseInt(h[16], 16) & 3];
  const s = h.join('');
  return s.slice(0, 8) + '-' + s.slice(8, 12) + '-' + s.slice(12, 16) + '-' + s.slice(16, 20) + '-' + s.slice(20);
}

/** jwtClaims reads a JWT's claims without verifying it ({} if unreadable). */
export function jwtClaims(token) {
  try {
    const p = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(p + '==='.slice((p.length + 3) % 4)));
  } catch (e) {
    return {};
  }
}

/**
 * backoffDelay follows the dispatch reconnect policy exactly:
 * min(max_ms, base_ms × 2^attempt) × (1 − jitter·r), r uniform in [0,1),
 * so clients dropped together spread out and never wait above max_ms.
 */
export function backoffDelay(policy, attempt, r = Math.random()) {
  const p = policy || DEFAULT_POLICY;
  const d = Math.min(p.max_ms, p.base_ms * Math.pow(2, attempt));
  const j = Math.min(1, Math.max(0, Number(p.jitter) || 0));
  return Math.max(0, Math.round(d * (1 - j * r)));
}

function joinURL(base, path) {
  return (base ? String(base).replace(/\/+$/, '') : '') + path;
}

/**
 * request sends one HTTP request with an optional JSON body and bearer token
 * and resolves to the JSON answer ({} when empty). It throws ApiError.
 * retries (default 0) repeats it after a network error or a 5xx, and, for
 * GET, after a 429, waiting retry_after_ms or an exponential backoff.
 */
export async function request(url, opts = {}) {
  return (await requestJSON(url, opts)).body;
}

/** requestJSON is request resolving to {status, body}: for callers that tell 200 from 202. */
export async function requestJSON(url, opts = {}) {
  const method = opts.method || 'GET';
  const doFetch = opts.fetch || globalThis.fetch;
  const headers = Object.assign({ Accept: 'application/json' }, opts.headers || {});
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (opts.token) headers.Authorization = 'Bearer ' + opts.token;
  const retries = opts.retries || 0;
  for (let i = 0; ; i++) {
    let res;
    try {
      res = await doFetch(url, {
        method, headers, cache: 'no-store', signal: opts.signal,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      });
    } catch (e) {
      if (opts.signal && opts.signal.aborted) throw e;
      if (i < retries) { await sleep(Math.min(4000, 300 * Math.pow(2, i))); continue; }
      throw new ApiError(0, null, 'network error: the server cannot be reached');
    }
    let j = null;
    try { j = await res.json(); } catch (e) { /* not JSON */ }
    if (res.ok) return { status: res.status, body: j || {} };
    const err = new ApiError(res.status, j);
    if (i < retries && (res.status >= 500 || (res.status === 429 && method === 'GET'))) {
      await sleep(err.retryAfterMs || Math.min(4000, 300 * Math.pow(2, i)));
      continue;
    }
    throw err;
  }
}

function roomPath(room) {
  if (!ROOM_RE.test(String(room))) throw new TypeError('liveroom: not a room id: ' + room);
  return '/v1/rooms/' + encodeURIComponent(room);
}

/**
 * sendMessage posts one message to the uplink (POST /v1/rooms/{room}/messages).
 * Gifts need idempotencyKey: reuse the same key on every retry of one gift.
 */
export function sendMessage(opts) {
  const headers = {};
  if (opts.idempotencyKey) headers['Idempotency-Key'] = opts.idempotencyKey;
  return request(joinURL(opts.baseURL, roomPath(opts.room) + '/messages'), {
    method: 'POST', body: opts.body, token: opts.token, headers, retries: opts.retries, fetch: opts.fetch,
  });
}

/** listSessions reads a room's live sessions, newest first. */
export async function listSessions(opts) {
  const j = await request(joinURL(opts.baseURL, roomPath(opts.room) + '/sessions'), opts);
  return j.sessions || [];
}

/**
 * getReplay reads one window [fromMs, toMs) of a recorded session:
 * {msgs, next_from_ms}; next_from_ms is set when the window was cut short.
 */
export function getReplay(opts) {
  const q = '?from_ms=' + Math.max(0, Math.floor(opts.fromMs || 0)) + '&to_ms=' + Math.floor(opts.toMs);
  return request(joinURL(opts.baseURL, roomPath(opts.room) + '/sessions/' + encodeURIComponent(opts.session) + '/replay' + q), opts);
}

/**
 * dispatch asks which gateways to try: {gateways, reconnect} or, when every
 * gateway is full and more are starting, {gateways: [], wait: ms}.
 * attempt counts the earlier asks of the same join; since is the client's
 * position once it has one. Neither is then counted as a new viewer.
 */
export async function dispatch(opts) {
  let q = '/v1/dispatch?room=' + encodeURIComponent(opts.room);
  if (opts.since !== undefined && opts.since !== null) q += '&since=' + opts.since;
  if (opts.attempt > 0) q += '&attempt=' + opts.attempt;
  let j;
  try {
    j = await request(joinURL(opts.baseURL, q), { fetch: opts.fetch });
  } catch (e) {
    if (e.code === 'network') e.message = 'cannot reach dispatch';
    throw e;
  }
  const gateways = j.gateways || [];
  const wait = Number(j.retry_after_ms) || 0;
  const out = { gateways, reconnect: j.reconnect || null, wait: 0 };
  if (!gateways.length && wait > 0) out.wait = Math.min(wait, opts.maxWaitMs || 60000);
  else if (!gateways.length) throw new ApiError(503, null, 'no gateway available');
  return out;
}

/**
 * gatewayURL resolves a gateway URL from dispatch against base (the page's
 * location by default): a path is on base's host, and a wildcard or empty
 * host ("0.0.0.0", "[::]") means base's host, keeping the gateway's own port.
 */
export function gatewayURL(u, base) {
  const b = base || (typeof location !== 'undefined' ? location : null);
  const secure = !!b && (b.protocol === 'https:' || b.protocol === 'wss:');
  if (u.charAt(0) === '/' && b) return (secure ? 'wss://' : 'ws://') + b.host + u;
  const m = /^(wss?|https?):\/\/([^/?#]*)(.*)$/i.exec(u);
  if (!m) return u;
  let scheme = m[1].toLowerCase().replace(/^http/, 'ws');
  let host = m[2];
  const hm = /^(0\.0\.0\.0|\[::\]|)(?::(\d+))?$/.exec(host);
  if (hm && b) {
    let h = b.hostname;
    if (h.indexOf(':') >= 0 && h.charAt(0) !== '[') h = '[' + h + ']';
    host = hm[2] ? h + ':' + hm[2] : b.host;
    if (secure) scheme = 'wss';
  }
  return scheme + '://' + host + (m[3] || '/');
}

/** BoundedSet remembers the most recent max values (a Set keeps insertion order). */
export class BoundedSet {
  constructor(max) { this.max = max; this.s = new Set(); }
  has(v) { return this.s.has(v); }
  add(v) {
    if (this.s.has(v)) return;
    this.s.add(v);
    if (this.s.size > this.max) this.s.delete(this.s.values().next().value);
  }
}

function online() {
  return typeof navigator === 'undefined' || navigator.onLine !== false;
}

const DEFAULTS = {
  baseURL: '',
  dedupeIds: 10000, // reliable ids remembered; a replay is at most 10,000
  connectTimeoutMs: 8000, // from new WebSocket to welcome
  hedgeDelayMs: 1000, // no handshake by then: dial the next candidate too
  stableMs: 5000, // a connection that lived this long resets the backoff
  livenessFactor: 1.75, // leave after this × hb_ms of silence
  idleTimeoutMs: 90000, // the same without hb_ms in the welcome (0: never)
  shunMs: 30000, // a gateway left for its silence is tried last this long
  maxWaitMs: 60000, // the longest dispatch wait accepted per answer
};

/**
 * Room follows one room: create it with connect(). Events (on/off): state,
 * welcome, history, message, danmaku, gift, like, count, notice, reconnect,
 * error. See liveroom.d.ts for the contract.
 */
export class Room {
  constructor(opts) {
    if (!opts || !ROOM_RE.test(String(opts.room))) throw new TypeError('liveroom: not a room id: ' + (opts && opts.room));
    if (!opts.token) throw new TypeError('liveroom: a token (string or function) is needed');
    if (opts.since !== undefined && opts.since !== null && !(Number.isSafeInteger(opts.since) && opts.since >= 0)) {
      throw new TypeError('liveroom: since must be a whole number >= 0: ' + opts.since);
    }
    this.options = Object.assign({}, DEFAULTS, opts);
    this.room = opts.room;
    this.state = 'connecting';
    this.detail = '';
    this.hasPosition = opts.since !== undefined && opts.since !== null;
    this.lastSeq = this.hasPosition ? Number(opts.since) || 0 : 0;
    this.gateway = '';
    this.user = '';
    this.online = 0;
    this.likes = 0;
    this.error = null;
    this.stats = { waits: 0, silentLeaves: 0, duplicates: 0, welcomes: 0, history: 0 };
    this.policy = Object.assign({}, DEFAULT_POLICY);
    this._h = new Map();
    this._attempt = 0;
    this._conn = null;
    this._connecting = false;
    this._fatal = null;
    this._closed = false;
    this._wake = null;
    this._failedOpens = 0;
    this._fresh = false;
    this._dedupe = new BoundedSet(this.options.dedupeIds);
    this._shunned = { id: '', until: 0 };
    this._onOnline = () => {
      if (this._wake) this._wake();
      else if (this.state === 'offline' && !this._fatal && !this._closed) this._connect();
    };
    if (typeof addEventListener === 'function') addEventListener('online', this._onOnline);
  }

  /** on adds a listener and returns a function that removes it. */
  on(type, fn) {
    if (!this._h.has(type)) this._h.set(type, new Set());
    this._h.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const s = this._h.get(type);
    if (s) s.delete(fn);
  }

  // _emit calls listeners synchronously; one that throws does not stop the
  // others or the SDK (its error is rethrown outside, to be seen).
  _emit(type, ev) {
    const s = this._h.get(type);
    if (!s) return;
    for (const fn of Array.from(s)) {
      try { fn(ev); } catch (e) { setTimeout(() => { throw e; }); }
    }
  }

  _setState(state, detail, until, error) {
    this.state = state;
    this.detail = detail || '';
    this._emit('state', { state, detail: this.detail, until: until || 0, error: error || null });
  }

  /** seen reports whether a message with this id was delivered (live or history), among the last dedupeIds. */
  seen(id) { return this._dedupe.has(id); }

  /** start begins joining (connect() calls it). */
  start() {
    this._connect();
    return this;
  }

  /** close leaves the room for good. */
  close() {
    if (this._closed) return;
    this._closed = true;
    if (typeof removeEventListener === 'function') removeEventListener('online', this._onOnline);
    const c = this._conn;
    this._conn = null;
    if (c) this._dropConn(c, 1000, 'bye');
    if (this._wake) this._wake();
    this._setState('offline', 'closed');
  }

  /** retryNow cuts a wait short and resets the backoff (a "Retry now" button). */
  retryNow() {
    if (this._closed) return;
    this._attempt = 0;
    if (this._wake) this._wake();
    else if (!this._connecting && !this._conn) this._connect();
  }

  /**
   * drop cuts the connection as a network failure would and reconnects per
   * the policy, staying down at least holdMs. For tests and demos.
   */
  drop(holdMs) {
    const c = this._conn;
    if (!c) return false;
    c.holdMs = Math.max(0, Number(holdMs) || 0);
    try { c.ws.close(); } catch (e) { /* ignore */ }
    this._onClosed(c); // onclose may come late: act now
    return true;
  }

  async _token(fresh) {
    const t = this.options.token;
    if (typeof t !== 'function') return t;
    if (this._fresh) { fresh = true; this._fresh = false; }
    return t(!!fresh);
  }

  _refreshable() { return typeof this.options.token === 'function'; }

  // _sleep waits ms; retryNow, the network coming back or close cut it short.
  _sleep(ms) {
    return new Promise((resolve) => {
      const done = () => { clearTimeout(t); if (this._wake === done) this._wake = null; resolve(); };
      const t = setTimeout(done, ms);
      this._wake = done;
    });
  }

  _backoff() {
    const d = backoffDelay(this.policy, this._attempt);
    this._attempt = Math.min(this._attempt + 1, 30);
    return d;
  }

  async _dispatch(asks) {
    const ans = await dispatch({
      room: this.room, baseURL: this.options.baseURL, fetch: this.options.fetch, maxWaitMs: this.options.maxWaitMs,
      since: this.hasPosition ? this.lastSeq : null, attempt: asks,
    });
    const p = ans.reconnect;
    if (p) {
      if (p.base_ms > 0) this.policy.base_ms = p.base_ms;
      if (p.max_ms > 0) this.policy.max_ms = p.max_ms;
      if (p.jitter !== undefined && p.jitter >= 0) this.policy.jitter = p.jitter;
    }
    return ans;
  }

  // _shunLast moves the gateway last left for its silence to the end: dispatch
  // may list it until its missing beats show.
  _shunLast(gws) {
    const s = this._shunned;
    if (!s.id || Date.now() > s.until) return gws;
    return gws.filter((g) => g.id !== s.id).concat(gws.filter((g) => g.id === s.id));
  }

  async _connect() {
    if (this._connecting || this._closed) return;
    this._connecting = true;
    this._fatal = null;
    let asks = 0;
    try {
      for (;;) {
        if (this._closed) return;
        if (this.state !== 'joining') this._setState(this.gateway || this._attempt ? 'reconnecting' : 'connecting');
        let err = null;
        try {
          const tok = await this._token(false);
          const ans = await this._dispatch(asks++);
          if (this._closed) return;
          if (ans.wait) {
            // Not an error: the room is filling up and more servers are
            // starting. Wait as asked (dispatch spread it), no backoff.
            this.stats.waits++;
            this._setState('joining', 'the room is filling up', Date.now() + ans.wait);
            await this._sleep(ans.wait);
            continue;
          }
          const [c, welcome] = await this._openAny(this._shunLast(ans.gateways), tok);
          if (this._closed) { this._dropConn(c, 1000, 'bye'); return; }
          this._failedOpens = 0;
          this._onWelcome(c, welcome);
          return;
        } catch (e) {
          err = e instanceof Error ? e : new ApiError(0, null, String(e));
        }
        if (this._closed) return;
        if (err.fatal || FATAL_CODES[err.code] || (err.code === 'unauthorized' && !this._refreshable())) {
          this._stop(err);
          return;
        }
        // A browser cannot see why a WebSocket handshake failed. If every
        // gateway refused twice in a row, a stale token is the likely cause:
        // ask the token function for a fresh one.
        if (err.code === 'unauthorized' || (err.status === 0 && !err.frame && ++this._failedOpens >= 2)) {
          this._fresh = this._refreshable();
          this._failedOpens = 0;
        }
        if (!online()) {
          this._setState('offline', 'no network');
          await new Promise((r) => { this._wake = () => { this._wake = null; r(); }; });
          continue;
        }
        const d = this._backoff();
        this._setState('reconnecting', err.message && err.status !== 0 ? err.message : '', Date.now() + d);
        await this._sleep(d);
      }
    } finally {
      this._connecting = false;
    }
  }

  // _openAny tries the candidates in order and resolves to [conn, welcome]
  // of the first that welcomes. A candidate that has not finished its
  // handshake within hedgeDelayMs may be hung (its kernel still accepts
  // TCP): the next one is dialled too, and the first welcome wins.
  _openAny(gws, tok) {
    return new Promise((resolve, reject) => {
      const pending = new Set();
      let i = 0;
      let done = false;
      let lastErr = null;
      const finish = (err, c, f) => {
        if (done) return;
        done = true;
        for (const a of pending) if (a !== c) a.abort();
        if (err) reject(err); else resolve([c, f]);
      };
      const next = () => {
        if (done) return;
        if (i >= gws.length) {
          if (!pending.size) finish(lastErr || new ApiError(503, null, 'no gateway available'));
          return;
        }
        const c = this._open(gws[i++], tok);
        pending.add(c);
        const hedge = setTimeout(next, this.options.hedgeDelayMs);
        c.onopen = () => clearTimeout(hedge);
        c.welcomed.then((f) => {
          clearTimeout(hedge);
          pending.delete(c);
          finish(null, c, f);
        }, (e) => {
          clearTimeout(hedge);
          pending.delete(c);
          lastErr = e;
          if (FATAL_CODES[e.code] || e.code === 'unauthorized') finish(e);
          else next();
        });
      };
      next();
    });
  }

  // _open dials one gateway; its welcomed promise resolves with the welcome.
  _open(gw, tok) {
    let url = gatewayURL(String(gw.url || ''), this.options.baseURL ? new URL(this.options.baseURL) : null);
    url += (url.indexOf('?') < 0 ? '?' : '&') + 'room=' + encodeURIComponent(this.room) + '&token=' + encodeURIComponent(tok);
    if (this.hasPosition) url += '&since=' + this.lastSeq;
    // backlog holds the frames that follow the welcome until the connection
    // is adopted: a WebSocket implementation may deliver several messages in
    // one task (Node's does), before the promise chain that adopts it runs.
    const c = { ws: null, gw, liveAt: 0, retiring: false, holdMs: 0, opened: false, heardAt: Date.now(), watch: 0, lastError: null, onopen: null, backlog: [] };
    let settled = false;
    let resolveW;
    let rejectW;
    c.welcomed = new Promise((res, rej) => { resolveW = res; rejectW = rej; });
    const fail = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try { c.ws.close(); } catch (e) { /* ignore */ }
      rejectW(err);
    };
    c.abort = () => {
      settled = true;
      clearTimeout(timer);
      try { c.ws.close(1000, 'another gateway answered'); } catch (e) { /* ignore */ }
    };
    const timer = setTimeout(() => fail(new ApiError(0, null, 'gateway did not answer')), this.options.connectTimeoutMs);
    const WS = this.options.WebSocket || globalThis.WebSocket;
    try {
      c.ws = new WS(url);
    } catch (e) {
      clearTimeout(timer);
      settled = true;
      rejectW(new ApiError(0, null, 'bad gateway url'));
      return c;
    }
    const ws = c.ws;
    ws.onopen = () => { c.opened = true; if (c.onopen) c.onopen(); };
    ws.onmessage = (ev) => {
      c.heardAt = Date.now();
      let f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (!f || typeof f !== 'object') return;
      if (!settled) {
        if (f.type === 'welcome') {
          settled = true;
          clearTimeout(timer);
          resolveW(f);
        } else if (f.type === 'error') {
          fail(frameError(f));
        }
        return;
      }
      if (c.backlog) c.backlog.push(f);
      else this._onFrame(c, f);
    };
    ws.onclose = (ev) => {
      if (!settled) {
        fail(c.lastError || new ApiError(0, null, c.opened ? 'gateway closed (' + ev.code + ')' : 'cannot connect to gateway'));
        return;
      }
      if (c.backlog) c.closedEarly = true; // welcomed, not adopted yet: _onWelcome handles it
      else this._onClosed(c);
    };
    return c;
  }

  _onWelcome(c, f) {
    this._conn = c;
    const backlog = c.backlog;
    c.backlog = null;
    c.liveAt = Date.now();
    this._watchLiveness(c, Number(f.hb_ms) || 0);
    this.gateway = f.gateway || c.gw.id || '';
    this.user = f.user || '';
    this.error = null;
    const resumed = this.hasPosition;
    if (!this.hasPosition) {
      // First join: the room's past is not ours to deliver as live (history
      // frames carry what a late joiner may see).
      this.lastSeq = Math.max(this.lastSeq, Number(f.seq) || 0);
      this.hasPosition = true;
    }
    this.online = Number(f.online) || 0;
    this.likes = Number(f.likes) || 0;
    this.stats.welcomes++;
    this._emit('welcome', Object.assign({}, f, { resumed }));
    this._setState('live');
    for (let i = 0; i < backlog.length && this._conn === c; i++) this._onFrame(c, backlog[i]);
    if (c.closedEarly) this._onClosed(c);
  }

  // _watchLiveness leaves c once it has been silent past its promise
  // (livenessFactor × hb_ms, or idleTimeoutMs without one).
  _watchLiveness(c, hbMs) {
    const silentMs = hbMs > 0 ? hbMs * this.options.livenessFactor : this.options.idleTimeoutMs;
    if (!(silentMs > 0)) return;
    const every = Math.max(100, Math.min(hbMs > 0 ? hbMs / 4 : 500, 500));
    c.watch = setInterval(() => {
      if (this._conn !== c || c.retiring) { clearInterval(c.watch); return; }
      if (Date.now() - c.heardAt <= silentMs) return;
      clearInterval(c.watch);
      this.stats.silentLeaves++;
      this._shunned = { id: this.gateway || c.gw.id || '', until: Date.now() + this.options.shunMs };
      this._conn = null;
      this._dropConn(c);
      // The silence was the wait: reconnect now, without backing off.
      this._setState('reconnecting', 'the server stopped answering');
      this._connect();
    }, every);
  }

  _dropConn(c, code, reason) {
    clearInterval(c.watch);
    try { if (code) c.ws.close(code, reason); else c.ws.close(); } catch (e) { /* ignore */ }
  }

  _onFrame(c, f) {
    if (c !== this._conn) return;
    switch (f.type) {
      case 'batch': {
        const msgs = Array.isArray(f.msgs) ? f.msgs : [];
        for (let i = 0; i < msgs.length; i++) this._onMessage(msgs[i]);
        break;
      }
      case 'history':
        this._onHistory(f);
        break;
      case 'reconnect':
        this._emit('reconnect', { after_ms: Math.max(0, Number(f.after_ms) || 0), reason: f.reason || 'draining' });
        this._moveAfter(c, Math.max(0, Number(f.after_ms) || 0));
        break;
      case 'error': {
        const e = frameError(f);
        c.lastError = e;
        if (FATAL_CODES[e.code]) this._stop(e);
        else this._emit('error', { error: e, fatal: false });
        break;
      }
      // hb: its arrival was the point (heardAt). Unknown types: ignored.
    }
  }

  _onMessage(m) {
    if (!m || typeof m.type !== 'string') return;
    if (m.id) {
      if (this._dedupe.has(m.id)) { this.stats.duplicates++; return; }
      this._dedupe.add(m.id);
    }
    const seq = Number(m.seq) || 0;
    if (seq) {
      if (this.hasPosition && seq <= this.lastSeq) { this.stats.duplicates++; return; }
      this.lastSeq = seq;
      this.hasPosition = true;
    }
    if (m.type === 'count') this.online = Number(m.online) || 0;
    if (m.type === 'like') this.likes = Math.max(this.likes, Number(m.total) || this.likes + (Number(m.count) || 0));
    this._emit('message', m);
    this._emit(m.type, m);
  }

  // _onHistory delivers a first join's recent past: marked past, never
  // moving the position, de-duplicated with what comes live.
  _onHistory(f) {
    const msgs = [];
    for (const m of Array.isArray(f.msgs) ? f.msgs : []) {
      if (!m || typeof m.type !== 'string') continue;
      if (m.id) {
        if (this._dedupe.has(m.id)) { this.stats.duplicates++; continue; }
        this._dedupe.add(m.id);
      }
      m.past = true;
      msgs.push(m);
    }
    this.stats.history += msgs.length;
    this._emit('history', { room: f.room || this.room, msgs });
  }

  // _moveAfter handles a gateway's request to leave (it is draining): keep
  // receiving on it while after_ms runs, then reconnect through dispatch.
  _moveAfter(c, ms) {
    if (c.retiring) return;
    c.retiring = true;
    this._setState('reconnecting', 'moving to another server', Date.now() + ms);
    this._sleep(ms).then(() => {
      if (this._conn === c) this._conn = null;
      this._dropConn(c, 1000, 'moving');
      this._connect();
    });
  }

  _onClosed(c) {
    clearInterval(c.watch);
    if (this._conn !== c) return;
    this._conn = null;
    if (c.retiring || this._fatal || this._closed) return; // _moveAfter reconnects itself
    if (Date.now() - c.liveAt >= this.options.stableMs) this._attempt = 0;
    const d = Math.max(c.holdMs, this._backoff());
    if (!online()) this._setState('offline', 'no network');
    else this._setState('reconnecting', c.lastError ? c.lastError.message : '', Date.now() + d);
    this._sleep(d).then(() => this._connect());
  }

  _stop(err) {
    this._fatal = err;
    this.error = { code: err.code, message: err.message };
    const c = this._conn;
    this._conn = null;
    if (c) this._dropConn(c);
    this._emit('error', { error: err, fatal: true });
    this._setState('offline', err.message, 0, err);
  }

  /** send posts a message to this room; a 401 with a token function asks it for a fresh token once. */
  async send(body, opts = {}) {
    const go = (token) => sendMessage({
      baseURL: this.options.baseURL, fetch: this.options.fetch, room: this.room, token, body,
      idempotencyKey: opts.idempotencyKey, retries: opts.retries,
    });
    try {
      return await go(await this._token(false));
    } catch (e) {
      if (e.status === 401 && this._refreshable()) return go(await this._token(true));
      throw e;
    }
  }

  sendDanmaku(text) { return this.send({ type: 'danmaku', text }); }

  /**
   * sendGift sends a gift under one Idempotency-Key (a new one unless given)
   * and retries network errors and 5xx with that same key, so the uplink
   * counts it once however often the request goes out.
   */
  sendGift(gift, count = 1, opts = {}) {
    return this.send({ type: 'gift', gift, count }, { idempotencyKey: opts.idempotencyKey || uuid4(), retries: opts.retries === undefined ? 3 : opts.retries });
  }

  sendLike(count = 1) { return this.send({ type: 'like', count }); }
}

function frameError(f) {
  const e = new ApiError(0, { error: f.error || {} }, 'gateway error');
  e.frame = true;
  return e;
}

/**
 * connect joins a room and returns its Room at once; listeners added in the
 * same tick see every event (joining starts in a microtask).
 */
export function connect(opts) {
  const r = new Room(opts);
  Promise.resolve().then(() => r.start());
  return r;
}
