// liveroom room page: follows the room through the liveroom SDK
// (liveroom.js: dispatch, gateway, reconnect, de-duplication, liveness) and
// shows danmaku, gifts, likes and the online count, and sends through the
// SDK's uplink helpers. Plain JS module, no build step. The wire contract is
// docs/PROTOCOL.md.
import { connect, request, listSessions, describeError as describe, jwtClaims, uuid4, ApiError, BoundedSet } from './liveroom.js';

(function () {
  'use strict';

  var room = document.body.dataset.room;
  var params = new URLSearchParams(location.search);

  // window.liveroom.seen / gifts keep this many recent ids for tests and
  // debugging, trimmed in chunks so the trim is amortised.
  var KEEP_IDS = 5000;
  var LIKE_BATCH_MS = 300;
  var MAX_FLYING = 80; // danmaku elements on screen at once
  var MAX_QUEUED = 150; // danmaku waiting for a lane; the oldest are dropped
  var TICKER_ITEMS = 60;

  var sdk = null; // the SDK's Room, made at the end of this file

  // window.liveroom is the page's debug surface (the browser tests read it);
  // the connection's figures are read from the SDK.
  var lr = {
    state: 'connecting',
    user: '',
    seen: [],
    gifts: [],
    history: [], // ids of the history frame's messages (past, not live)
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
    _debugDrop: function (holdMs) { return sdk ? sdk.drop(holdMs) : false; },
  };
  [['lastSeq', 'lastSeq'], ['gateway', 'gateway']].forEach(function (p) {
    Object.defineProperty(lr, p[0], { enumerable: true, get: function () { return sdk ? sdk[p[1]] : (p[0] === 'gateway' ? '' : 0); } });
  });
  ['waits', 'silentLeaves'].forEach(function (k) {
    Object.defineProperty(lr, k, { enumerable: true, get: function () { return sdk ? sdk.stats[k] : 0; } });
  });
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
  function pushBounded(arr, v) {
    arr.push(v);
    if (arr.length > KEEP_IDS + 500) arr.splice(0, arr.length - KEEP_IDS);
  }

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
    var id = uuid4().slice(0, 4).toUpperCase();
    var user = 'guest-' + id;
    var name = wantName || ('Guest ' + id);
    var j;
    try {
      j = await request('/v1/dev/token', { method: 'POST', body: { user: user, name: name, role: wantRole } });
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

  // ---------- connection state (from the SDK's state events) ----------
  // joining: dispatch asked to wait (every server full, more starting);
  // no error, the SDK asks again when told.
  var STATE_TEXT = { connecting: 'Connecting…', joining: 'Joining…', live: 'Live', reconnecting: 'Reconnecting', offline: 'Offline' };
  // The status says in a word or two why the page stopped; the bar under
  // the header says what to do.
  var STOP_TEXT = { banned: 'banned', forbidden: 'not allowed', invalid_room: 'not a room', unauthorized: 'token refused' };
  var countdownTimer = 0;

  function onState(ev) {
    var s = ev.state;
    var detail = ev.detail;
    if (ev.error) detail = ev.error.needToken ? 'token needed' : (STOP_TEXT[ev.error.code] || 'stopped');
    if (lr.state !== s || el.statusLabel.dataset.detail !== detail) {
      el.statusLabel.textContent = STATE_TEXT[s] + (detail ? ' — ' + detail : '');
      el.statusLabel.dataset.detail = detail;
    }
    lr.state = s;
    document.body.dataset.state = s;
    // Retrying cannot help a page that needs another token or address.
    var stuck = ev.error && (ev.error.needToken || ev.error.code === 'unauthorized');
    el.retry.hidden = stuck || !(s === 'offline' || s === 'reconnecting');
    showCountdown(s === 'reconnecting' || s === 'joining' ? ev.until : 0);
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

  el.retry.addEventListener('click', function () { sdk.retryNow(); });

  function onWelcome(f) {
    lr.user = f.user || '';
    lr.error = null;
    setOnline(f.online || 0);
    setLikes(f.likes || 0, true);
    if (!lr.canSend) setSendable(true);
    el.bar.hidden = true;
  }

  // onError: a fatal error stops the page until the user acts; any other
  // (a gateway's error frame before it closes) is only told.
  function onError(ev) {
    if (ev.fatal) stop(ev.error);
    else toast(ev.error.message);
  }

  function stop(err) {
    lr.error = { code: err.code, message: err.message };
    setSendable(false, err.needToken || err.code === 'unauthorized' ? 'Sending needs a token' : 'Sending is off');
    if (err.needToken) {
      showBar('This server needs a token: open this page with ?token=… added to its address.',
        (err.code === 'dev_mode_only' ? '' : err.message + ' ') + 'Use a JWT from your platform, or mint one with the server\'s secret ' +
        '(liveroom token --user you --name You) and open ' + location.pathname + '?token=<that token>.');
      return;
    }
    if (err.code === 'unauthorized') {
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

  // ---------- messages ----------
  function onMessage(m) {
    if (m.id) pushBounded(lr.seen, m.id);
  }

  function onLike(m) {
    if (m.total) setLikes(m.total, false);
    else setLikes(lr.likes + (m.count || 0), false);
    var others = Math.max(0, (m.count || 0) - ownLikeEcho);
    ownLikeEcho = Math.max(0, ownLikeEcho - (m.count || 0));
    for (var i = 0; i < Math.min(others, 4); i++) setTimeout(floatHeart, i * 120);
    if (others >= 2) likeBurst(others);
  }

  // onHistory shows a first join's recent past: comments in the comment list
  // and on the video, gifts in the ticker without their animation.
  function onHistory(ev) {
    ev.msgs.forEach(function (m) {
      pushBounded(lr.history, m.id);
      if (m.type === 'danmaku') {
        logComment(m);
        danmaku.fly(m.text || '', !!m.user && m.user === lr.user, m.id);
      } else if (m.type === 'gift') {
        showGift(m, true);
      }
    });
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
    if (sdk.seen(id)) {
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

  // showGift puts a gift in the ticker and, unless it is past (history),
  // flashes it on the video.
  function showGift(m, past) {
    var who = m.name || m.user || 'Someone';
    var label = giftLabel(m.gift);
    var count = m.count || 1;

    var li = document.createElement('li');
    li.dataset.id = m.id;
    if (past) li.className = 'past';
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

    if (!past && !document.hidden) {
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

  // ---------- sending (the SDK's uplink helpers) ----------
  el.send.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var text = el.text.value.trim();
    if (!text) return;
    var echo = echoLocal(text);
    try {
      var r = await sdk.sendDanmaku(text);
      if (el.text.value.trim() === text) el.text.value = '';
      if (r && r.id) echoAccepted(echo, r.id);
    } catch (e) {
      echoFailed(echo);
      toast(describe(e));
    }
  });

  // Gifts are paid: the SDK sends one click under one Idempotency-Key and
  // reuses it on every retry, so the uplink counts it once.
  async function sendGift(btn) {
    btn.setAttribute('aria-busy', 'true');
    try {
      await sdk.sendGift(btn.dataset.gift, 1);
    } catch (e) {
      toast(describe(e));
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
      await sdk.sendLike(n);
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

  function loadSessions() {
    if (sessionsLoading) return sessionsLoading;
    sessionsLoading = (async function () {
      try {
        sessionList = await listSessions({ room: room });
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
      var s = await request('/v1/rooms/' + encodeURIComponent(room) + '/live/' + action, { method: 'POST', body: {}, token: tok });
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
  if (override) gotToken(override);
  sdk = connect({ room: room, token: override || getToken });
  sdk.on('state', onState);
  sdk.on('welcome', onWelcome);
  sdk.on('error', onError);
  sdk.on('history', onHistory);
  sdk.on('message', onMessage);
  sdk.on('danmaku', function (m) { logComment(m); onDanmaku(m); });
  sdk.on('gift', function (m) { pushBounded(lr.gifts, m.id); showGift(m, false); });
  sdk.on('like', onLike);
  sdk.on('count', function (m) { setOnline(m.online || 0); });
  sdk.on('notice', function (m) {
    showNotice(m);
    if (m.action === 'live_start' || m.action === 'live_stop') onLiveNotice(m);
  });
})();
