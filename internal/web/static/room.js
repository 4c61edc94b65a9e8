// liveroom room page: connects through dispatch to a gateway, shows danmaku,
// gifts, likes and the online count, and sends through the uplink.
// Plain JS, no build step. The wire contract is docs/PROTOCOL.md.
(function () {
  'use strict';

  var room = document.body.dataset.room;
  var params = new URLSearchParams(location.search);

  // Reliable messages are de-duplicated by id over this many recent ids; the
  // gateway replays at most its window on since=, far fewer than this.
  var DEDUPE_IDS = 10000;
  // window.liveroom.seen / gifts keep this many recent ids for tests and
  // debugging, trimmed in chunks so the trim is amortised.
  var KEEP_IDS = 5000;
  var CONNECT_TIMEOUT_MS = 8000; // from new WebSocket to welcome
  var STABLE_MS = 5000; // a connection that lived this long resets backoff
  // A gateway that promises a frame every hb_ms (its welcome) and sends
  // nothing for LIVENESS_FACTOR times that is hung: leave it at once and
  // resume elsewhere with since= (docs/PROTOCOL.md, liveness).
  var LIVENESS_FACTOR = 1.75;
  var SHUN_MS = 30000; // a gateway left for its silence is tried last this long
  var LIKE_BATCH_MS = 300;
  var GIFT_RETRIES = 3;
  var MAX_FLYING = 80; // danmaku elements on screen at once
  var MAX_QUEUED = 150; // danmaku waiting for a lane; the oldest are dropped
  var TICKER_ITEMS = 60;

  var lr = {
    state: 'connecting',
    lastSeq: 0,
    gateway: '',
    user: '',
    seen: [],
    gifts: [],
    waits: 0, // wait answers from dispatch (every gateway full)
    silentLeaves: 0, // gateways left because they went silent
    online: 0,
    likes: 0,
    error: null,
    // Own comments shown at once (echo.shown), then matched to the
    // server's copy by its id (echo.reconciled) or taken back when the send
    // failed (echo.failed).
    echo: { shown: 0, reconciled: 0, failed: 0 },
    danmaku: null, // function: the danmaku layer's counters
    role: '', // the token's role; anchors and admins get the live control
    canSend: true, // false while the page has no usable token
    live: null, // the room's running session as the anchor control knows it
    _debugDrop: debugDrop,
  };
  window.liveroom = lr;

  // ---------- DOM ----------
  var $ = function (id) { return document.getElementById(id); };
  var el = {
    statusLabel: $('status-label'),
    statusCount: $('status-count'),
    retry: $('retry'),
    online: $('online'),
    likes: $('likes'),
    like: $('like'),
    video: $('video'),
    label: document.querySelector('.video-label'),
    danmaku: $('danmaku'),
    flash: $('gift-flash'),
    hearts: $('hearts'),
    likeBurst: $('like-burst'),
    bigGift: $('gift-big'),
    dmToggle: $('dm-toggle'),
    dmDensity: $('dm-density'),
    send: $('send'),
    text: $('text'),
    ticker: $('ticker'),
    tickerEmpty: $('ticker-empty'),
    commentLog: $('comment-log'),
    toast: $('toast'),
    icons: $('gift-icons'),
    bar: $('bar'),
    barText: $('bar-text'),
    barHelp: $('bar-help'),
    liveCtl: $('live-ctl'),
    liveState: $('live-state'),
    liveBtn: $('live-btn'),
    sessionsBox: $('sessions-box'),
    sessions: $('sessions'),
    sessionsEmpty: $('sessions-empty'),
  };
  el.sendBtn = el.send.querySelector('button[type="submit"]');

  // ---------- small helpers ----------
  function randomHex(bytes) {
    var a = new Uint8Array(bytes);
    crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return (b + 0x100).toString(16).slice(1); }).join('');
  }

  // uuid4 from getRandomValues: crypto.randomUUID exists only in secure
  // contexts, and a demo on http://<lan-ip>:8080 is not one.
  function uuid4() {
    var h = randomHex(16).split('');
    h[12] = '4';
    h[16] = '89ab'[parseInt(h[16], 16) & 3];
    h = h.join('');
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  function pushBounded(arr, v) {
    arr.push(v);
    if (arr.length > KEEP_IDS + 500) arr.splice(0, arr.length - KEEP_IDS);
  }

  // BoundedSet remembers the most recent max values (Set keeps insertion order).
  function BoundedSet(max) { this.max = max; this.s = new Set(); }
  BoundedSet.prototype.has = function (v) { return this.s.has(v); };
  BoundedSet.prototype.add = function (v) {
    if (this.s.has(v)) return;
    this.s.add(v);
    if (this.s.size > this.max) this.s.delete(this.s.values().next().value);
  };

  function fmt(n) { return Number(n || 0).toLocaleString(); }

  function giftIcon(gift) {
    var src = el.icons.content.querySelector('[data-gift="' + (/^[a-z0-9_-]+$/i.test(gift) ? gift : '') + '"] svg') ||
      el.icons.content.querySelector('[data-gift=""] svg');
    return src.cloneNode(true);
  }

  function giftLabel(gift) {
    var b = /^[a-z0-9_-]+$/i.test(gift) && document.querySelector('button[data-gift="' + gift + '"] .gift-label');
    return b ? b.textContent : String(gift || 'gift');
  }

  // ---------- toast ----------
  var toastTimer = 0;
  function toast(msg, kind) {
    el.toast.textContent = msg;
    el.toast.className = 'toast' + (kind ? ' ' + kind : '');
    el.toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.toast.hidden = true; }, 4000);
  }

  // ApiError carries a JSON error answer {"error":{code,message,field}}.
  function ApiError(status, body, fallback) {
    var e = (body && body.error) || {};
    this.status = status;
    this.code = e.code || (status ? 'http_' + status : 'network');
    this.field = e.field || '';
    this.retryAfterMs = e.retry_after_ms || 0;
    this.message = e.message || fallback || ('HTTP ' + status);
  }
  ApiError.prototype = Object.create(Error.prototype);

  function describe(err) {
    if (!(err instanceof ApiError)) return 'Network error — check your connection.';
    var m = err.message;
    if (err.status === 429) {
      m = 'Slow down — ' + m;
      if (err.retryAfterMs) m += ' (try again in ' + Math.ceil(err.retryAfterMs / 1000) + ' s)';
    }
    return m;
  }

  async function postJSON(url, body, headers) {
    var res;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: Object.assign({ 'Content-Type': 'application/json' }, headers || {}),
        body: JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, null, 'Network error — check your connection.');
    }
    var j = null;
    try { j = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) throw new ApiError(res.status, j);
    return j || {};
  }

  // ---------- token ----------
  // ?token= overrides everything (kept for this tab only, and removed from
  // the address bar so it is not shared by copying the URL). Otherwise a dev
  // token from POST /v1/dev/token is kept in localStorage and reused until it
  // expires or the server rejects it.
  var TOKEN_KEY = 'liveroom.token';
  var OVERRIDE_KEY = 'liveroom.tokenOverride';
  var wantName = (params.get('name') || '').trim().slice(0, 32);
  // ?role=anchor asks a dev-mode server for an anchor's token (the live
  // control); the server decides what it grants.
  var wantRole = ({ anchor: 1, admin: 1 })[params.get('role')] ? params.get('role') : 'viewer';
  var override = params.get('token') || '';
  try {
    if (override) sessionStorage.setItem(OVERRIDE_KEY, override);
    else override = sessionStorage.getItem(OVERRIDE_KEY) || '';
  } catch (e) { /* storage disabled */ }
  if (params.has('token')) {
    params.delete('token');
    var qs = params.toString();
    history.replaceState(null, '', location.pathname + (qs ? '?' + qs : '') + location.hash);
  }
  var token = '';
  var tokenIsDev = false;

  function jwtClaims(t) {
    try {
      var p = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(p + '==='.slice((p.length + 3) % 4)));
    } catch (e) { return {}; }
  }

  function usable(t) {
    var exp = jwtClaims(t).exp;
    return !exp || exp * 1000 > Date.now() + 30000;
  }

  async function getToken(fresh) {
    if (override) { tokenIsDev = false; return gotToken(override); }
    if (token && !fresh && usable(token)) return token;
    var stored = null;
    try { stored = JSON.parse(localStorage.getItem(TOKEN_KEY) || 'null'); } catch (e) { /* ignore */ }
    if (!fresh && stored && stored.token && usable(stored.token) && (!wantName || stored.name === wantName) &&
        (stored.role || 'viewer') === wantRole) {
      token = stored.token;
      tokenIsDev = true;
      return gotToken(token);
    }
    var id = randomHex(2).toUpperCase();
    var user = 'guest-' + id;
    var name = wantName || ('Guest ' + id);
    var j;
    try {
      j = await postJSON('/v1/dev/token', { user: user, name: name, role: wantRole });
    } catch (e) {
      if (e instanceof ApiError && e.status >= 400 && e.status < 500) {
        // A server with a secret has no guest tokens: the page needs one.
        e.fatal = true;
        e.needToken = true;
      }
      throw e;
    }
    if (!j.token) throw new ApiError(0, null, 'The dev token endpoint answered without a token.');
    token = j.token;
    tokenIsDev = true;
    try { localStorage.setItem(TOKEN_KEY, JSON.stringify({ token: token, name: name, user: user, role: wantRole })); } catch (e) { /* ignore */ }
    return gotToken(token);
  }

  // gotToken notes the role of the token in use: anchors and admins get the
  // live control (the server checks the room's anchor on every call).
  function gotToken(t) {
    var role = jwtClaims(t).role || 'viewer';
    if (role !== lr.role) {
      lr.role = role;
      showLiveControl();
    }
    return t;
  }

  // ---------- connection state ----------
  // joining: dispatch asked to wait (every server full, more starting);
  // no error, the page asks again when told.
  var STATE_TEXT = { connecting: 'Connecting…', joining: 'Joining…', live: 'Live', reconnecting: 'Reconnecting', offline: 'Offline' };
  var countdownTimer = 0;
  var detail = '';

  function setState(s, info) {
    detail = info || '';
    if (lr.state !== s || el.statusLabel.dataset.detail !== detail) {
      el.statusLabel.textContent = STATE_TEXT[s] + (detail ? ' — ' + detail : '');
      el.statusLabel.dataset.detail = detail;
    }
    lr.state = s;
    document.body.dataset.state = s;
    el.retry.hidden = !(s === 'offline' || s === 'reconnecting');
    if (s !== 'reconnecting') showCountdown(0);
  }

  function showCountdown(until) {
    clearInterval(countdownTimer);
    if (!until) { el.statusCount.textContent = ''; return; }
    var tick = function () {
      var left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      el.statusCount.textContent = left > 0 ? 'in ' + left + ' s' : '…';
      if (left <= 0) clearInterval(countdownTimer);
    };
    tick();
    countdownTimer = setInterval(tick, 250);
  }

  // Reconnect policy from dispatch; these defaults apply until it answers.
  var policy = { base_ms: 500, max_ms: 15000, jitter: 0.5 }; // dispatch's defaults
  var attempt = 0;

  // backoff follows the dispatch policy exactly:
  // delay = min(max_ms, base_ms × 2^attempt) × (1 − jitter·rand), rand in [0,1),
  // so viewers dropped together spread out and never wait above max_ms.
  function backoff() {
    var d = Math.min(policy.max_ms, policy.base_ms * Math.pow(2, attempt));
    var j = Math.min(1, Math.max(0, Number(policy.jitter) || 0));
    d = d * (1 - j * Math.random());
    attempt = Math.min(attempt + 1, 30);
    return Math.max(0, Math.round(d));
  }

  // waitFor sleeps ms while showing the countdown; "Retry now", the browser
  // coming back online, or the tab becoming visible cut it short.
  var wake = null;
  function waitFor(ms) {
    return new Promise(function (resolve) {
      var t = setTimeout(done, ms);
      function done() { clearTimeout(t); wake = null; resolve(); }
      wake = done;
      showCountdown(Date.now() + ms);
    });
  }

  el.retry.addEventListener('click', function () {
    attempt = 0;
    if (wake) wake();
    else if (!connecting) connect();
  });
  window.addEventListener('online', function () { if (wake) wake(); else if (lr.state === 'offline' && !fatal) connect(); });

  // ---------- dispatch + gateway ----------
  var conn = null; // {ws, gw, liveAt, retiring, holdMs}
  var connecting = false;
  var fatal = null; // an error that stops reconnecting until the user retries
  var hasPosition = false; // true once a welcome told us where the room stood
  var failedOpens = 0;

  // dispatch asks which gateways to try; asks counts the requests of this
  // join before it (attempt=, so that dispatch does not count a viewer
  // asking again as a new one), and since= tells it this viewer already
  // follows the room. It resolves to {gateways} or, when every gateway is
  // full and the fleet is growing, to {wait: ms}.
  async function dispatch(asks) {
    var res;
    var url = '/v1/dispatch?room=' + encodeURIComponent(room);
    if (lr.lastSeq || hasPosition) url += '&since=' + lr.lastSeq;
    if (asks > 0) url += '&attempt=' + asks;
    try {
      res = await fetch(url, { cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, null, 'cannot reach dispatch');
    }
    var j = null;
    try { j = await res.json(); } catch (e) { /* ignore */ }
    if (!res.ok) throw new ApiError(res.status, j, 'dispatch answered ' + res.status);
    if (j && j.reconnect) {
      var p = j.reconnect;
      if (p.base_ms > 0) policy.base_ms = p.base_ms;
      if (p.max_ms > 0) policy.max_ms = p.max_ms;
      if (p.jitter !== undefined && p.jitter >= 0) policy.jitter = p.jitter;
    }
    var gws = (j && j.gateways) || [];
    var wait = Number(j && j.retry_after_ms) || 0;
    if (!gws.length && wait > 0) return { wait: Math.min(wait, 60000) };
    if (!gws.length) throw new ApiError(503, null, 'no gateway available');
    return { gateways: gws };
  }

  // wsURL resolves a gateway URL: a wildcard or empty host means "the host
  // this page came from" (keeping the gateway's own port when it names one).
  function wsURL(u) {
    var secure = location.protocol === 'https:';
    if (u.charAt(0) === '/') return (secure ? 'wss://' : 'ws://') + location.host + u;
    var m = /^(wss?|https?):\/\/([^\/?#]*)(.*)$/i.exec(u);
    if (!m) return u;
    var scheme = m[1].toLowerCase().replace(/^http/, 'ws');
    var host = m[2];
    var rest = m[3] || '/';
    var hm = /^(0\.0\.0\.0|\[::\]|)(?::(\d+))?$/.exec(host);
    if (hm) {
      host = hm[2] ? location.hostname.replace(/^(.*:.*)$/, '[$1]') + ':' + hm[2] : location.host;
      if (secure) scheme = 'wss';
    }
    return scheme + '://' + host + rest;
  }

  // open dials one gateway and resolves once its welcome arrives.
  function open(gw, tok) {
    return new Promise(function (resolve, reject) {
      var url = wsURL(gw.url);
      url += (url.indexOf('?') < 0 ? '?' : '&') + 'room=' + encodeURIComponent(room) + '&token=' + encodeURIComponent(tok);
      if (lr.lastSeq || hasPosition) url += '&since=' + lr.lastSeq;
      var ws;
      try { ws = new WebSocket(url); } catch (e) { reject(new ApiError(0, null, 'bad gateway url')); return; }
      var c = { ws: ws, gw: gw, liveAt: 0, retiring: false, holdMs: 0, opened: false, heardAt: Date.now(), watch: 0 };
      var settled = false;
      var timer = setTimeout(function () { fail(new ApiError(0, null, 'gateway did not answer')); }, CONNECT_TIMEOUT_MS);
      function fail(err) {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        try { ws.close(); } catch (e) { /* ignore */ }
        reject(err);
      }
      ws.onopen = function () { c.opened = true; };
      ws.onmessage = function (ev) {
        c.heardAt = Date.now();
        var f;
        try { f = JSON.parse(ev.data); } catch (e) { return; }
        if (!settled) {
          if (f.type === 'welcome') {
            settled = true;
            clearTimeout(timer);
            onWelcome(c, f);
            resolve(c);
          } else if (f.type === 'error') {
            fail(frameError(f));
          }
          return;
        }
        onFrame(c, f);
      };
      ws.onclose = function (ev) {
        if (!settled) {
          fail(c.lastError || new ApiError(0, null, c.opened ? 'gateway closed (' + ev.code + ')' : 'cannot connect to gateway'));
          return;
        }
        onClosed(c, ev);
      };
    });
  }

  function frameError(f) {
    var e = new ApiError(0, { error: f.error || {} }, 'gateway error');
    e.frame = true;
    return e;
  }

  // Codes after which reconnecting would only fail again.
  var FATAL_CODES = { banned: 1, forbidden: 1, invalid_room: 1 };

  async function connect() {
    if (connecting) return;
    connecting = true;
    fatal = null;
    var asks = 0;
    try {
      for (;;) {
        if (lr.state !== 'joining') setState(lr.gateway || attempt ? 'reconnecting' : 'connecting');
        var err = null;
        try {
          var tok = await getToken(false);
          var ans = await dispatch(asks++);
          if (ans.wait) {
            // Not an error: the room is filling up and more servers are
            // starting. Wait as asked (dispatch spread it) and ask again,
            // without backing off.
            lr.waits++;
            setState('joining', 'the room is filling up');
            await waitFor(ans.wait);
            continue;
          }
          var gws = shunLast(ans.gateways);
          for (var i = 0; i < gws.length; i++) {
            try {
              var c = await open(gws[i], tok);
              failedOpens = 0;
              return c;
            } catch (e) {
              err = e;
              if (e.code && FATAL_CODES[e.code]) throw e;
              if (e.code === 'unauthorized') break;
            }
          }
          throw err || new ApiError(503, null, 'no gateway available');
        } catch (e) {
          err = e;
        }
        if (err.fatal || FATAL_CODES[err.code] || (err.code === 'unauthorized' && !tokenIsDev)) {
          stop(err);
          return null;
        }
        // A browser cannot see why a WebSocket handshake failed. If every
        // gateway refused us twice in a row, a stale dev token (a dev server
        // restarted with a new secret) is the likely cause: mint a new one.
        if (err.code === 'unauthorized' || (err.status === 0 && !err.frame && ++failedOpens >= 2)) {
          if (tokenIsDev) { token = ''; try { localStorage.removeItem(TOKEN_KEY); } catch (e2) { /* ignore */ } }
          failedOpens = 0;
        }
        if (!navigator.onLine) {
          setState('offline', 'no network');
          await new Promise(function (r) { wake = function () { wake = null; r(); }; });
          continue;
        }
        var d = backoff();
        setState('reconnecting', err.message && err.status !== 0 ? err.message : '');
        await waitFor(d);
      }
    } finally {
      connecting = false;
    }
  }

  // The status says in a word or two why the page stopped; the bar under
  // the header says what to do.
  var STOP_TEXT = { banned: 'banned', forbidden: 'not allowed', invalid_room: 'not a room', unauthorized: 'token refused' };

  function stop(err) {
    fatal = err;
    lr.error = { code: err.code, message: err.message };
    setSendable(false, err.needToken || err.code === 'unauthorized' ? 'Sending needs a token' : 'Sending is off');
    if (err.needToken) {
      setState('offline', 'token needed');
      el.retry.hidden = true; // retrying cannot help: the page needs another address
      showBar('This server needs a token: open this page with ?token=… added to its address.',
        (err.code === 'dev_mode_only' ? '' : err.message + ' ') + 'Use a JWT from your platform, or mint one with the server\'s secret ' +
        '(liveroom token --user you --name You) and open ' + location.pathname + '?token=<that token>.');
      return;
    }
    setState('offline', STOP_TEXT[err.code] || 'stopped');
    if (err.code === 'unauthorized') {
      el.retry.hidden = true;
      showBar('The server refused this page\'s token.', err.message + ' — open this page with a valid ?token=… (a JWT the server can verify).');
      return;
    }
    showBar(err.message, '');
  }

  function showBar(text, help) {
    el.barText.textContent = text;
    el.barHelp.textContent = help;
    el.barHelp.hidden = !help;
    el.bar.hidden = false;
  }

  // setSendable enables or disables everything that sends: without a token
  // the comment box and the gift and like buttons must not look usable.
  // why replaces the comment box's placeholder while it is off.
  function setSendable(on, why) {
    lr.canSend = on;
    document.body.dataset.canSend = on ? 'yes' : 'no';
    el.text.disabled = !on;
    el.sendBtn.disabled = !on;
    el.like.disabled = !on;
    el.text.placeholder = on ? 'Say something…' : why;
    document.querySelectorAll('button[data-gift]').forEach(function (b) { b.disabled = !on; });
  }

  // shunned is the gateway last left for its silence: dispatch may list it
  // until its missing beats show, so it is tried last for SHUN_MS.
  var shunned = { id: '', until: 0 };
  function shunLast(gws) {
    if (!shunned.id || Date.now() > shunned.until) return gws;
    return gws.filter(function (g) { return g.id !== shunned.id; })
      .concat(gws.filter(function (g) { return g.id === shunned.id; }));
  }

  // watchLiveness leaves c once it has been silent past its promise.
  function watchLiveness(c, hbMs) {
    if (!(hbMs > 0)) return;
    var silentMs = hbMs * LIVENESS_FACTOR;
    c.watch = setInterval(function () {
      if (conn !== c || c.retiring) { clearInterval(c.watch); return; }
      if (Date.now() - c.heardAt <= silentMs) return;
      clearInterval(c.watch);
      lr.silentLeaves++;
      shunned = { id: lr.gateway || c.gw.id || '', until: Date.now() + SHUN_MS };
      conn = null;
      try { c.ws.close(); } catch (e) { /* ignore */ }
      // The silence was the wait: reconnect now, without backing off.
      setState('reconnecting', 'the server stopped answering');
      connect();
    }, Math.max(100, Math.min(hbMs / 2, 500)));
  }

  function onWelcome(c, f) {
    conn = c;
    c.liveAt = Date.now();
    watchLiveness(c, Number(f.hb_ms) || 0);
    lr.gateway = f.gateway || c.gw.id || '';
    lr.user = f.user || '';
    lr.error = null;
    if (!hasPosition) {
      // First join: the room's history before now is not ours to show.
      lr.lastSeq = Math.max(lr.lastSeq, f.seq || 0);
      hasPosition = true;
    }
    setOnline(f.online || 0);
    setLikes(f.likes || 0, true);
    setState('live');
    if (!lr.canSend) setSendable(true);
    el.bar.hidden = true;
  }

  function onFrame(c, f) {
    if (c !== conn) return;
    switch (f.type) {
      case 'batch':
        var msgs = f.msgs || [];
        for (var i = 0; i < msgs.length; i++) onMessage(msgs[i]);
        break;
      case 'reconnect':
        moveAfter(c, Math.max(0, Number(f.after_ms) || 0));
        break;
      case 'error':
        c.lastError = frameError(f);
        if (FATAL_CODES[c.lastError.code]) stop(c.lastError);
        else toast(c.lastError.message);
        break;
    }
  }

  // moveAfter handles a gateway's request to leave (it is draining): keep
  // receiving on it while the countdown runs, then reconnect via dispatch.
  function moveAfter(c, ms) {
    if (c.retiring) return;
    c.retiring = true;
    setState('reconnecting', 'moving to another server');
    waitFor(ms).then(function () {
      if (conn === c) conn = null;
      try { c.ws.close(1000, 'moving'); } catch (e) { /* ignore */ }
      connect();
    });
  }

  function onClosed(c, ev) {
    clearInterval(c.watch);
    if (conn !== c) return;
    conn = null;
    if (c.retiring) return; // moveAfter reconnects when its countdown ends
    if (fatal) return;
    if (Date.now() - c.liveAt >= STABLE_MS) attempt = 0;
    var hold = c.holdMs;
    var d = Math.max(hold, backoff());
    if (!navigator.onLine) { setState('offline', 'no network'); }
    else setState('reconnecting', c.lastError ? c.lastError.message : '');
    waitFor(d).then(connect);
  }

  // debugDrop cuts the connection as a network failure would (for tests);
  // holdMs keeps it down at least that long.
  function debugDrop(holdMs) {
    var c = conn;
    if (!c) return false;
    c.holdMs = Math.max(0, Number(holdMs) || 0);
    c.ws.close();
    // onclose may come late; act now so the test sees the state at once.
    onClosed(c, { code: 1006 });
    return true;
  }

  // ---------- messages ----------
  var dedupe = new BoundedSet(DEDUPE_IDS);

  function onMessage(m) {
    if (!m || !m.type) return;
    if (m.id) {
      if (dedupe.has(m.id)) return;
      dedupe.add(m.id);
      pushBounded(lr.seen, m.id);
    }
    if (m.seq && (m.type === 'gift' || m.type === 'notice')) {
      if (m.seq > lr.lastSeq) lr.lastSeq = m.seq;
      hasPosition = true;
    }
    switch (m.type) {
      case 'danmaku':
        logComment(m);
        onDanmaku(m);
        break;
      case 'gift':
        pushBounded(lr.gifts, m.id);
        showGift(m);
        break;
      case 'like':
        if (m.total) setLikes(m.total, false);
        else setLikes(lr.likes + (m.count || 0), false);
        var others = Math.max(0, (m.count || 0) - ownLikeEcho);
        ownLikeEcho = Math.max(0, ownLikeEcho - (m.count || 0));
        for (var i = 0; i < Math.min(others, 4); i++) setTimeout(floatHeart, i * 120);
        if (others >= 2) likeBurst(others);
        break;
      case 'count':
        setOnline(m.online || 0);
        break;
      case 'notice':
        showNotice(m);
        if (m.action === 'live_start' || m.action === 'live_stop') onLiveNotice(m);
        break;
    }
  }

  function setOnline(n) {
    lr.online = n;
    el.online.textContent = fmt(n);
  }

  // Likes never go backwards on screen: a local click counts at once and the
  // server's running total, which will include it, catches up later. A
  // welcome's total (reset) does not include clicks not yet sent.
  function setLikes(total, reset) {
    lr.likes = Math.max(lr.likes, total + (reset ? pendingLikes : 0));
    el.likes.textContent = fmt(lr.likes);
  }

  function logComment(m) {
    var li = document.createElement('li');
    li.textContent = (m.name || m.user || 'someone') + ': ' + (m.text || '');
    el.commentLog.appendChild(li);
    while (el.commentLog.childElementCount > 50) el.commentLog.firstElementChild.remove();
  }

  // ---------- danmaku ----------
  var PREFS_KEY = 'liveroom.danmaku';
  var prefs = { on: true, density: 'normal' };
  try { Object.assign(prefs, JSON.parse(localStorage.getItem(PREFS_KEY) || '{}')); } catch (e) { /* ignore */ }
  var danmaku = window.LiveroomDanmaku(el.danmaku, el.label, { maxFlying: MAX_FLYING, maxQueued: MAX_QUEUED, density: prefs.density, enabled: prefs.on });
  lr.danmaku = danmaku.stats;

  function savePrefs() { try { localStorage.setItem(PREFS_KEY, JSON.stringify(prefs)); } catch (e) { /* ignore */ } }

  function showPrefs() {
    el.dmToggle.setAttribute('aria-pressed', prefs.on ? 'true' : 'false');
    el.dmToggle.querySelector('.dm-toggle-label').textContent = prefs.on ? 'Comments on' : 'Comments off';
    el.dmDensity.value = prefs.density;
    el.dmDensity.disabled = !prefs.on;
    document.body.dataset.danmaku = prefs.on ? 'on' : 'off';
  }
  el.dmToggle.addEventListener('click', function () {
    prefs.on = !prefs.on;
    danmaku.setEnabled(prefs.on);
    savePrefs();
    showPrefs();
  });
  el.dmDensity.addEventListener('change', function () {
    prefs.density = el.dmDensity.value;
    danmaku.setDensity(prefs.density);
    savePrefs();
  });
  danmaku.setEnabled(prefs.on);
  showPrefs();

  // Local echo: an own comment flies at once (outlined) and is matched with
  // the server's copy so it never shows twice. The match is by message id
  // once the uplink answered; a copy that comes through the gateway before
  // that answer is matched by sender and text.
  var echoes = []; // {text, item, id}
  var echoed = new BoundedSet(500); // ids of own comments already on screen

  function echoLocal(text) {
    var e = { text: text, item: danmaku.fly(text, true, ''), id: '' };
    e.item.local = true;
    echoes.push(e);
    if (echoes.length > 50) echoes.shift();
    lr.echo.shown++;
    return e;
  }

  function bindEcho(e, id) {
    e.id = id;
    echoed.add(id);
    danmaku.setId(e.item, id);
    lr.echo.reconciled++;
  }

  // echoAccepted runs when the uplink took the comment and named its id.
  function echoAccepted(e, id) {
    if (e.id) return; // the gateway's copy came first and was matched
    if (dedupe.has(id)) {
      // The copy already flew unmatched (its sender did not read as us):
      // take the echo back rather than show the comment twice.
      danmaku.cancel(e.item);
      echoes.splice(echoes.indexOf(e), 1);
      echoed.add(id);
      lr.echo.reconciled++;
      return;
    }
    bindEcho(e, id);
  }

  function echoFailed(e) {
    danmaku.cancel(e.item);
    var i = echoes.indexOf(e);
    if (i >= 0) echoes.splice(i, 1);
    lr.echo.failed++;
  }

  function onDanmaku(m) {
    if (echoed.has(m.id)) return;
    var mine = !!m.user && m.user === lr.user;
    if (mine) {
      for (var i = 0; i < echoes.length; i++) {
        if (!echoes[i].id && echoes[i].text === (m.text || '')) { bindEcho(echoes[i], m.id); return; }
      }
    }
    danmaku.fly(m.text || '', mine, m.id);
  }

  // ---------- gifts and notices ----------
  function clock(ts) {
    var d = ts ? new Date(ts) : new Date();
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function tickerItem(li) {
    el.tickerEmpty.hidden = true;
    el.ticker.prepend(li);
    while (el.ticker.childElementCount > TICKER_ITEMS) el.ticker.lastElementChild.remove();
  }

  function showGift(m) {
    var who = m.name || m.user || 'Someone';
    var label = giftLabel(m.gift);
    var count = m.count || 1;

    var li = document.createElement('li');
    li.dataset.id = m.id;
    li.appendChild(giftIcon(m.gift));
    var t = document.createElement('span');
    t.className = 'tick-text';
    var n = document.createElement('span');
    n.className = 'tick-name';
    n.textContent = who;
    var c = document.createElement('span');
    c.className = 'tick-count';
    c.textContent = count > 1 ? ' ×' + count : '';
    t.append(n, ' sent a ' + label, c);
    var tm = document.createElement('time');
    tm.className = 'tick-time';
    if (m.ts) tm.dateTime = new Date(m.ts).toISOString();
    tm.textContent = clock(m.ts);
    li.append(t, tm);
    tickerItem(li);

    if (!document.hidden) {
      flashGift(who, label, m.gift, count);
      if (BIG_GIFTS[m.gift]) bigGift(m.gift);
    }
  }

  // Expensive gifts also get the centre of the video for a moment; one at a
  // time, the newest wins.
  var BIG_GIFTS = { rocket: 1, castle: 1, car: 1 };
  var bigTimer = 0;
  function bigGift(gift) {
    el.bigGift.textContent = '';
    var icon = giftIcon(gift);
    el.bigGift.appendChild(icon);
    el.bigGift.className = 'gift-big go gift-big-' + gift;
    clearTimeout(bigTimer);
    bigTimer = setTimeout(function () { el.bigGift.className = 'gift-big'; el.bigGift.textContent = ''; }, 2200);
  }

  var flashes = 0;
  function flashGift(who, label, gift, count) {
    if (flashes >= 3 && el.flash.firstElementChild) {
      el.flash.firstElementChild.remove();
      flashes--;
    }
    var f = document.createElement('div');
    f.className = 'flash';
    f.appendChild(giftIcon(gift));
    var s = document.createElement('span');
    s.textContent = who + ' sent a ' + label + ' ';
    var c = document.createElement('span');
    c.className = 'count';
    c.textContent = '×' + count;
    s.appendChild(c);
    f.appendChild(s);
    el.flash.appendChild(f);
    flashes++;
    setTimeout(function () { if (f.isConnected) { f.remove(); flashes--; } }, 3100);
  }

  function showNotice(m) {
    var li = document.createElement('li');
    li.className = 'notice';
    li.dataset.id = m.id;
    var t = document.createElement('span');
    t.className = 'tick-text';
    t.textContent = m.text || '';
    var tm = document.createElement('time');
    tm.className = 'tick-time';
    tm.textContent = clock(m.ts);
    li.append(t, tm);
    tickerItem(li);
    toast(m.text || 'Notice', 'info');
  }

  // ---------- sending ----------
  function messagesURL() { return '/v1/rooms/' + encodeURIComponent(room) + '/messages'; }

  // send posts one message; a 401 with a dev token mints a new one once.
  async function send(body, headers) {
    var tok = await getToken(false);
    try {
      return await postJSON(messagesURL(), body, Object.assign({ Authorization: 'Bearer ' + tok }, headers || {}));
    } catch (e) {
      if (e.status === 401 && tokenIsDev) {
        tok = await getToken(true);
        return postJSON(messagesURL(), body, Object.assign({ Authorization: 'Bearer ' + tok }, headers || {}));
      }
      throw e;
    }
  }

  el.send.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var text = el.text.value.trim();
    if (!text) return;
    var echo = echoLocal(text);
    try {
      var r = await send({ type: 'danmaku', text: text });
      if (el.text.value.trim() === text) el.text.value = '';
      if (r && r.id) echoAccepted(echo, r.id);
    } catch (e) {
      echoFailed(echo);
      toast(describe(e));
    }
  });

  // Gifts are paid: one click is one Idempotency-Key, reused on every retry
  // so the uplink counts it once however many times the request is sent.
  async function sendGift(btn) {
    var key = uuid4();
    var body = { type: 'gift', gift: btn.dataset.gift, count: 1 };
    btn.setAttribute('aria-busy', 'true');
    try {
      for (var i = 0; ; i++) {
        try {
          await send(body, { 'Idempotency-Key': key });
          return;
        } catch (e) {
          var retry = e instanceof ApiError && (e.status === 0 || e.status >= 500) && i < GIFT_RETRIES;
          if (!retry) { toast(describe(e)); return; }
          await sleep(300 * Math.pow(2, i));
        }
      }
    } finally {
      btn.removeAttribute('aria-busy');
    }
  }

  document.querySelectorAll('button[data-gift]').forEach(function (b) {
    b.addEventListener('click', function () { sendGift(b); });
  });

  // Likes: clicks count on screen at once and go out as one request per
  // LIKE_BATCH_MS with the summed count.
  var pendingLikes = 0;
  var likeTimer = 0;
  var ownLikeEcho = 0;

  el.like.addEventListener('click', function () {
    pendingLikes++;
    lr.likes++;
    el.likes.textContent = fmt(lr.likes);
    floatHeart();
    if (!likeTimer) likeTimer = setTimeout(flushLikes, LIKE_BATCH_MS);
  });

  async function flushLikes() {
    likeTimer = 0;
    var n = pendingLikes;
    pendingLikes = 0;
    if (!n) return;
    ownLikeEcho += n;
    try {
      await send({ type: 'like', count: n });
    } catch (e) {
      ownLikeEcho = Math.max(0, ownLikeEcho - n);
      lr.likes = Math.max(0, lr.likes - n);
      el.likes.textContent = fmt(lr.likes);
      toast(describe(e));
    }
  }

  // likeBurst shows "+N" when other viewers' likes arrive in one aggregate:
  // the room's likes come as summed totals, never one message per click.
  var burstTimer = 0;
  function likeBurst(n) {
    if (document.hidden) return;
    el.likeBurst.textContent = '+' + fmt(n);
    el.likeBurst.classList.remove('go');
    void el.likeBurst.offsetWidth; // restart the animation
    el.likeBurst.classList.add('go');
    clearTimeout(burstTimer);
    burstTimer = setTimeout(function () { el.likeBurst.classList.remove('go'); }, 1300);
  }

  function floatHeart() {
    if (document.hidden || el.hearts.childElementCount > 20) return;
    var svg = el.like.querySelector('svg').cloneNode(true);
    svg.setAttribute('class', 'heart-float');
    svg.style.setProperty('--hx', Math.round(Math.random() * 40 - 20) + 'px');
    svg.addEventListener('animationend', function () { svg.remove(); }, { once: true });
    el.hearts.appendChild(svg);
  }

  // ---------- live sessions: the anchor's control, recent streams ----------
  // The room's sessions are read (GET /v1/rooms/R/sessions) only by an
  // anchor's page and when someone opens "Recent streams": a join storm of
  // viewers must not become a storm of session lists. Live notices keep
  // what was read up to date without asking again.
  var sessionList = null; // newest first, as the API answers
  var sessionsLoading = null;

  function sessionsURL() { return '/v1/rooms/' + encodeURIComponent(room) + '/sessions'; }

  function loadSessions() {
    if (sessionsLoading) return sessionsLoading;
    sessionsLoading = (async function () {
      try {
        var r = await fetch(sessionsURL(), { cache: 'no-store', headers: { Accept: 'application/json' } });
        var j = null;
        try { j = await r.json(); } catch (e) { /* not JSON */ }
        if (!r.ok) throw new ApiError(r.status, j);
        sessionList = (j && j.sessions) || [];
      } catch (e) {
        sessionList = null;
        el.sessionsEmpty.textContent = 'Cannot list the streams: ' + describe(e);
        el.sessionsEmpty.hidden = false;
      } finally {
        sessionsLoading = null;
      }
      renderSessions();
    })();
    return sessionsLoading;
  }

  function fmtLen(ms) {
    var s = Math.max(0, Math.round((ms || 0) / 1000));
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    return (h ? h + ':' + String(m).padStart(2, '0') : String(m)) + ':' + String(s % 60).padStart(2, '0');
  }

  function renderSessions() {
    if (!sessionList) return;
    lr.live = sessionList.find(function (x) { return x.live; }) || null;
    el.sessions.textContent = '';
    sessionList.slice(0, 5).forEach(function (x) {
      var li = document.createElement('li');
      li.dataset.session = x.id;
      var a = document.createElement('a');
      a.href = '/replay/' + encodeURIComponent(room) + '/' + encodeURIComponent(x.id);
      a.textContent = new Date(x.started_ms).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
      var d = document.createElement('span');
      d.className = 'session-len';
      d.textContent = x.live ? ' · live now' : ' · ' + fmtLen(x.duration_ms);
      li.append(a, d);
      el.sessions.appendChild(li);
    });
    el.sessionsEmpty.hidden = sessionList.length > 0;
    if (!sessionList.length) el.sessionsEmpty.textContent = 'No stream of this room was recorded yet.';
    showLiveControl();
  }

  el.sessionsBox.addEventListener('toggle', function () {
    if (el.sessionsBox.open && !sessionList) loadSessions();
  });

  function onLiveNotice(m) {
    if (!sessionList || !m.session) return;
    var cur = sessionList.find(function (x) { return x.id === m.session; });
    if (m.action === 'live_start' && !cur) {
      sessionList.unshift({ id: m.session, started_ms: m.ts || Date.now(), live: true, duration_ms: 0 });
    } else if (m.action === 'live_stop' && cur) {
      cur.live = false;
      cur.duration_ms = Math.max(0, (m.ts || Date.now()) - cur.started_ms);
    }
    renderSessions();
  }

  // showLiveControl shows the anchor's Go live / End live control to a
  // token of role anchor or admin; the server still decides (only the
  // room's anchor, or an admin).
  var liveBusy = false;
  function showLiveControl() {
    var may = lr.role === 'anchor' || lr.role === 'admin';
    el.liveCtl.hidden = !may;
    if (!may) return;
    if (!sessionList && !sessionsLoading) { loadSessions(); }
    var on = !!lr.live;
    document.body.dataset.live = on ? 'yes' : 'no';
    el.liveState.textContent = sessionList ? (on ? 'Live now' : 'Not live') : '…';
    el.liveBtn.textContent = on ? 'End live' : 'Go live';
    el.liveBtn.setAttribute('aria-label', on ? 'End the live stream of this room' : 'Start a live stream of this room');
    el.liveBtn.disabled = liveBusy || !sessionList;
  }

  el.liveBtn.addEventListener('click', async function () {
    var action = lr.live ? 'stop' : 'start';
    liveBusy = true;
    showLiveControl();
    try {
      var tok = await getToken(false);
      var s = await postJSON('/v1/rooms/' + encodeURIComponent(room) + '/live/' + action, {}, { Authorization: 'Bearer ' + tok });
      toast(action === 'start' ? 'You are live: what is said from now on is kept for the replay.' : 'The live stream ended; its replay is under Recent streams.', 'info');
      lr.lastLive = { action: action, session: s.id };
    } catch (e) {
      toast(describe(e));
      lr.lastLive = { action: action, error: e.code || 'network' };
    } finally {
      liveBusy = false;
    }
    await loadSessions();
  });

  // ---------- start ----------
  connect();
})();
