// liveroom operator dashboard: polls the admin API (GET /v1/admin/stats) and
// the autoscaler (GET /v1/autoscale/decisions), keeps two minutes of figures
// in memory for the charts, drains gateways, announces audiences and
// moderates rooms. Plain JS module, no build step; requests go through the
// liveroom SDK's request helper, to this page's own origin.
import { requestJSON, jwtClaims, ApiError } from './liveroom.js';

(function () {
  'use strict';

  var POLL_MS = 1000;
  var AUTOSCALE_MS = 5000;
  var WINDOW_MS = 120000;
  var TOKEN_KEY = 'liveroom.adminToken';

  var $ = function (id) { return document.getElementById(id); };
  var st = {
    state: 'signed-out', // signed-out | live | error
    polls: 0,
    gateways: [], // ids in the last answer
    states: {}, // id -> state
    autoscale: 'unknown', // running | absent | unknown
    error: null,
    lastDrain: null,
    lastModeration: null,
    conns: {}, // id -> connections in the last answer
    drainWarning: '', // the last-gateway warning shown, if any
    announcements: [], // ids in the last answer
    lastAnnouncement: null,
  };
  window.lrAdmin = st;

  // ---------- helpers ----------
  function fmt(n, digits) {
    return Number(n || 0).toLocaleString(undefined, { maximumFractionDigits: digits || 0 });
  }
  function bytes(n) {
    if (!n) return '–';
    var u = ['B', 'KiB', 'MiB', 'GiB'];
    var i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return n.toFixed(n >= 100 || i === 0 ? 0 : 1) + ' ' + u[i];
  }
  function ms(v) { return v ? (v < 10 ? v.toFixed(1) : Math.round(v)) + ' ms' : '–'; }
  function age(startedMs) {
    var s = Math.max(0, Math.round((Date.now() - startedMs) / 1000));
    if (s < 90) return s + ' s';
    if (s < 5400) return Math.round(s / 60) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }
  function td(text, cls) {
    var c = document.createElement('td');
    if (cls) c.className = cls;
    c.textContent = text;
    return c;
  }

  var toastTimer = 0;
  function toast(msg, kind) {
    var t = $('toast');
    t.textContent = msg;
    t.className = 'toast' + (kind ? ' ' + kind : '');
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { t.hidden = true; }, 5000);
  }

  // ---------- token ----------
  var token = '';
  try { token = sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { /* storage disabled */ }

  function setToken(t) {
    token = t;
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* ignore */ }
    $('signin').hidden = !!t;
    $('signout').hidden = !t;
    if (t) {
      $('signin-error').hidden = true;
      pollNow();
    } else {
      setState('signed-out', 'Signed out');
    }
  }

  function signinError(msg) {
    var e = $('signin-error');
    e.textContent = msg;
    e.hidden = false;
  }

  $('token-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var t = $('token').value.trim();
    if (!t) return;
    var c = jwtClaims(t);
    if (c.role && c.role !== 'admin') { signinError('That token has role “' + c.role + '”; the dashboard needs role admin.'); return; }
    $('token').value = '';
    setToken(t);
  });

  $('dev-token').addEventListener('click', async function () {
    var r = await api('POST', '/v1/dev/token', { user: 'operator', name: 'Operator', role: 'admin' }, true);
    if (r.ok && r.body && r.body.token) { setToken(r.body.token); return; }
    signinError(r.message + (r.code === 'dev_only' ? '' : ' (dev tokens exist only on a server in dev mode)'));
  });

  $('signout').addEventListener('click', function () { setToken(''); $('token').focus(); });

  // api sends one request (the SDK's request) and never throws: it answers
  // {ok, status, body, code, message, field}, message being the server's
  // JSON error message when there is one.
  async function api(method, url, body, noAuth) {
    try {
      var r = await requestJSON(url, { method: method, body: body, token: noAuth ? '' : token });
      return { ok: true, status: r.status, body: r.body, code: '', message: '', field: '' };
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      return {
        ok: false, status: e.status, body: null, code: e.code,
        message: e.status ? e.message : 'Network error: the server did not answer.', field: e.field,
      };
    }
  }

  // ---------- polling ----------
  function setState(s, label) {
    st.state = s;
    document.body.dataset.state = s;
    $('poll-label').textContent = label;
  }

  var history = []; // {t, msgs, frames, p50, p99, dropped, slow}
  var charts = {
    msgs: window.LiveroomChart($('c-msgs'), { windowMs: WINDOW_MS, series: [{ color: '#ff3d6e', fill: true }] }),
    delay: window.LiveroomChart($('c-delay'), { windowMs: WINDOW_MS, series: [{ color: '#2fd37a' }, { color: '#ffb020' }] }),
    drops: window.LiveroomChart($('c-drops'), { windowMs: WINDOW_MS, series: [{ color: '#8a5cff', fill: true }, { color: '#ff5c5c' }] }),
  };

  var pollTimer = 0;
  var inFlight = false;
  function pollNow() { clearTimeout(pollTimer); poll(); }

  async function poll() {
    clearTimeout(pollTimer);
    if (!token) return;
    if (inFlight) { pollTimer = setTimeout(poll, POLL_MS); return; }
    inFlight = true;
    var r = await api('GET', '/v1/admin/stats');
    inFlight = false;
    if (r.ok) {
      st.polls++;
      st.error = null;
      setState('live', 'Live · updated ' + new Date().toLocaleTimeString());
      render(r.body);
    } else if (r.status === 401 || r.status === 403) {
      st.error = { code: r.code, message: r.message };
      setToken('');
      signinError('The server refused the token: ' + r.message);
      return;
    } else {
      st.error = { code: r.code, message: r.message };
      setState('error', 'Cannot read stats: ' + r.message);
    }
    pollTimer = setTimeout(poll, POLL_MS);
  }

  function render(s) {
    var t = s.totals || {};
    $('t-gateways').textContent = fmt(t.gateways);
    $('t-gateways-sub').textContent = fmt(t.active) + ' active · ' + fmt(t.draining) + ' draining';
    $('t-conns').textContent = fmt(t.conns);
    $('t-msgs').textContent = fmt(t.msgs_out, 1);
    $('t-frames').textContent = fmt(t.frames_out, 1) + ' frames/s · ' + bytes(t.bytes_out) + '/s';
    $('t-delay').textContent = ms(t.delay_p50_ms) + ' / ' + ms(t.delay_p99_ms);
    $('t-delay-sub').textContent = t.delay_p99_ms ? 'worst gateway’s p99, last second' : 'nothing pushed in the last second';
    $('t-drops').textContent = fmt(t.dropped, 1);
    $('t-slow').textContent = fmt(t.closed_slow, 2) + ' slow closes/s';

    var now = s.ts || Date.now();
    history.push({ t: now, v: [t.msgs_out || 0, t.delay_p50_ms || 0, t.delay_p99_ms || 0, t.dropped || 0, t.closed_slow || 0] });
    while (history.length && history[0].t < now - WINDOW_MS - 5000) history.shift();
    charts.msgs.draw(history.map(function (p) { return { t: p.t, v: [p.v[0]] }; }));
    charts.delay.draw(history.map(function (p) { return { t: p.t, v: [p.v[1], p.v[2]] }; }));
    charts.drops.draw(history.map(function (p) { return { t: p.t, v: [p.v[3], p.v[4]] }; }));

    renderGateways(s.gateways || []);
    renderRooms(s.rooms || []);
    renderAnnouncements(s.announcements || []);
  }

  // resetBody empties a table body before it is drawn again, and returns the
  // data-<key> of the button in it that had the focus (to give it back).
  // With empty text, the body gets one row saying so across cols columns.
  function resetBody(body, key, empty, cols) {
    var focused = document.activeElement && body.contains(document.activeElement) ? document.activeElement.dataset[key] : null;
    body.textContent = '';
    if (empty) {
      var tr = document.createElement('tr');
      tr.className = 'empty';
      tr.appendChild(td(empty)).colSpan = cols;
      body.appendChild(tr);
    }
    return focused;
  }

  // ---------- announced audiences ----------
  function when(iso) {
    var d = new Date(iso);
    return d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  }

  function renderAnnouncements(list) {
    st.announcements = list.map(function (a) { return a.id; });
    var body = $('ann-body');
    var focused = resetBody(body, 'id', list.length ? '' : 'No show announced.', 6);
    if (!list.length) return;
    var now = Date.now();
    list.forEach(function (a) {
      var tr = document.createElement('tr');
      tr.dataset.id = a.id;
      var name = document.createElement('th');
      name.scope = 'row';
      name.textContent = a.room;
      var from = td(when(a.at) + (Date.parse(a.at) <= now ? ' (on now)' : ''));
      var act = document.createElement('td');
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'btn btn-small';
      b.textContent = 'Delete';
      b.dataset.id = a.id;
      b.setAttribute('aria-label', 'Delete the announcement for room ' + a.room);
      b.addEventListener('click', async function () {
        b.disabled = true;
        var r = await api('DELETE', '/v1/admin/announcements/' + encodeURIComponent(a.id));
        if (r.ok) { toast('Announcement for ' + a.room + ' deleted.', 'good'); pollNow(); } else { toast('Cannot delete: ' + r.message); b.disabled = false; }
      });
      act.appendChild(b);
      tr.append(name, td(fmt(a.viewers), 'num'), from, td(when(a.until)), td(a.note || ''), act);
      body.appendChild(tr);
      if (focused === a.id) b.focus();
    });
  }

  $('ann-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var at = new Date($('ann-at').value);
    var minutes = Number($('ann-minutes').value) || 60;
    if (isNaN(at.getTime())) { annResult('Give the time the audience arrives.', true); return; }
    var r = await api('POST', '/v1/admin/announcements', {
      room: $('ann-room').value.trim(), viewers: Number($('ann-viewers').value),
      at: at.toISOString(), until: new Date(at.getTime() + minutes * 60000).toISOString(), note: $('ann-note').value,
    });
    st.lastAnnouncement = r.ok ? r.body.id : null;
    if (r.ok) {
      annResult('Announced: ' + fmt(r.body.viewers) + ' viewers in ' + r.body.room + ' from ' + when(r.body.at) + '.', false);
      pollNow();
    } else {
      annResult(r.message + (r.field ? ' (' + r.field + ')' : ''), true);
    }
  });

  function annResult(text, bad) {
    var e = $('ann-result');
    e.textContent = text;
    e.className = 'mod-result ' + (bad ? 'bad' : 'good');
  }

  // The form starts at the next round quarter of an hour.
  (function () {
    var d = new Date(Date.now() + 15 * 60000);
    d.setMinutes(Math.ceil(d.getMinutes() / 15) * 15, 0, 0);
    var pad = function (n) { return String(n).padStart(2, '0'); };
    $('ann-at').value = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' + pad(d.getHours()) + ':' + pad(d.getMinutes());
  })();

  // ---------- gateways ----------
  var rows = {}; // id -> {tr, cells, btn}

  function renderGateways(gws) {
    var body = $('gw-body');
    var seen = {};
    st.gateways = gws.map(function (g) { return g.id; });
    st.states = {};
    var empty = body.querySelector('tr.empty');
    if (gws.length && empty) empty.remove();
    gws.forEach(function (g, i) {
      seen[g.id] = true;
      st.states[g.id] = g.state;
      st.conns[g.id] = g.conns || 0;
      var r = rows[g.id] || newGatewayRow(g.id);
      var c = r.cells;
      c.state.firstChild.textContent = g.state;
      c.state.firstChild.className = 'badge state-' + g.state;
      c.conns.textContent = fmt(g.conns) + (g.max_conns ? ' / ' + fmt(g.max_conns) : '');
      var pct = Math.round((g.load || 0) * 100);
      r.bar.style.setProperty('--v', Math.min(100, pct) + '%');
      r.bar.className = 'bar' + (pct >= 80 ? ' hot' : pct >= 50 ? ' warm' : '');
      r.barLabel.textContent = pct + '%';
      r.loadCell.setAttribute('aria-label', 'Load ' + pct + ' percent');
      c.cpu.textContent = (g.cpu || 0).toFixed(2);
      c.rss.textContent = bytes(g.rss);
      c.msgs.textContent = fmt(g.msgs_out, 1);
      c.p99.textContent = ms(g.delay_p99_ms);
      c.up.textContent = age(g.started);
      var draining = g.state === 'draining';
      if (draining) disarm(r);
      r.btn.disabled = draining || r.busy;
      if (body.children[i] !== r.tr) body.insertBefore(r.tr, body.children[i] || null);
    });
    Object.keys(rows).forEach(function (id) {
      if (!seen[id] && !rows[id].tr.contains(document.activeElement)) {
        rows[id].tr.remove();
        delete rows[id];
      }
    });
    if (!gws.length && !body.querySelector('tr.empty')) {
      var tr = document.createElement('tr');
      tr.className = 'empty';
      tr.appendChild(td('No gateway is beating.')).colSpan = 10;
      body.appendChild(tr);
    }
  }

  function newGatewayRow(id) {
    var tr = document.createElement('tr');
    tr.dataset.gateway = id;
    var name = document.createElement('th');
    name.scope = 'row';
    name.className = 'mono';
    name.textContent = id;
    var state = document.createElement('td');
    state.appendChild(document.createElement('span'));
    var loadCell = document.createElement('td');
    var bar = document.createElement('span');
    bar.className = 'bar';
    bar.setAttribute('aria-hidden', 'true');
    bar.appendChild(document.createElement('span'));
    var barLabel = document.createElement('span');
    barLabel.className = 'bar-label';
    loadCell.append(bar, barLabel);
    var cells = { state: state, conns: td('', 'num'), cpu: td('', 'num'), rss: td('', 'num'), msgs: td('', 'num'), p99: td('', 'num'), up: td('', 'num') };
    var act = document.createElement('td');
    var btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'btn btn-small drain';
    btn.dataset.gateway = id;
    btn.textContent = 'Drain';
    btn.setAttribute('aria-label', 'Drain gateway ' + id);
    act.appendChild(btn);
    tr.append(name, state, cells.conns, loadCell, cells.cpu, cells.rss, cells.msgs, cells.p99, cells.up, act);
    var r = { tr: tr, cells: cells, btn: btn, bar: bar, barLabel: barLabel, loadCell: loadCell, armed: 0, stage: 0, busy: false };
    btn.addEventListener('click', function () { drainClick(id, r); });
    rows[id] = r;
    return r;
  }

  function disarm(r) {
    clearTimeout(r.armed);
    r.armed = 0;
    r.stage = 0;
    r.btn.classList.remove('armed', 'armed-last');
    r.btn.textContent = 'Drain';
    r.btn.setAttribute('aria-label', 'Drain gateway ' + r.tr.dataset.gateway);
    if (st.drainWarning === r.tr.dataset.gateway) hideDrainWarning();
  }

  function hideDrainWarning() {
    st.drainWarning = '';
    $('gw-warning').hidden = true;
  }

  // othersActive counts the active gateways other than id: where a drained
  // gateway's viewers can go.
  function othersActive(id) {
    return Object.keys(st.states).filter(function (g) { return g !== id && st.states[g] === 'active'; }).length;
  }

  function arm(r, stage, text, label) {
    clearTimeout(r.armed);
    r.stage = stage;
    r.btn.classList.add('armed');
    r.btn.classList.toggle('armed-last', stage === 2);
    r.btn.textContent = text;
    r.btn.setAttribute('aria-label', label);
    r.armed = setTimeout(function () { disarm(r); }, stage === 2 ? 10000 : 5000);
  }

  // A drain moves every viewer of the gateway: the first click arms the
  // button, a second within 5 s confirms (no modal dialog, so the keyboard
  // and tests drive it like any button). When no other active gateway can
  // take the viewers, the second click only warns, naming the consequence,
  // and a third within 10 s drains all the same.
  async function drainClick(id, r) {
    if (!r.stage) {
      arm(r, 1, 'Confirm drain', 'Confirm: drain gateway ' + id + ' and move its viewers');
      return;
    }
    if (r.stage === 1 && othersActive(id) === 0) {
      var nc = st.conns[id] || 0;
      st.drainWarning = id;
      var w = $('gw-warning');
      w.textContent = 'No other active gateway: draining ' + id + ' leaves its ' + fmt(nc) + (nc === 1 ? ' viewer' : ' viewers') +
        ' and everyone who joins with no gateway. They see “no gateway is available” until another gateway starts. ' +
        'Start one first, or click “Drain anyway” to go ahead.';
      w.hidden = false;
      arm(r, 2, 'Drain anyway', 'Drain anyway: ' + id + ' is the only active gateway; viewers will have no gateway');
      return;
    }
    var alone = othersActive(id) === 0;
    disarm(r);
    hideDrainWarning();
    r.busy = true;
    r.btn.disabled = true;
    r.btn.textContent = 'Draining…';
    var res = await api('POST', '/v1/admin/gateways/' + encodeURIComponent(id) + '/drain');
    r.busy = false;
    r.btn.textContent = 'Drain';
    st.lastDrain = { gateway: id, status: res.status, message: res.message };
    if (res.ok) {
      var n = (res.body && res.body.conns) || 0;
      toast(alone ? 'Gateway ' + id + ' is draining with no other gateway: its ' + fmt(n) + (n === 1 ? ' viewer has' : ' viewers have') + ' nowhere to go until one starts.'
        : 'Gateway ' + id + ' is draining; its ' + fmt(n) + (n === 1 ? ' viewer moves' : ' viewers move') + ' to other gateways.', 'info');
    } else {
      r.btn.disabled = false;
      toast('Cannot drain ' + id + ': ' + res.message);
    }
    pollNow();
  }

  // ---------- rooms ----------
  function renderRooms(rooms) {
    var body = $('rooms-body');
    var focused = resetBody(body, 'room', rooms.length ? '' : 'No rooms with viewers.', 4);
    if (!rooms.length) return;
    rooms.forEach(function (r) {
      var tr = document.createElement('tr');
      tr.dataset.room = r.room;
      var name = document.createElement('th');
      name.scope = 'row';
      var a = document.createElement('a');
      a.href = '/room/' + encodeURIComponent(r.room);
      a.textContent = r.room;
      name.appendChild(a);
      var act = document.createElement('td');
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'btn btn-small';
      b.textContent = 'Moderate';
      b.dataset.room = r.room;
      b.setAttribute('aria-label', 'Moderate room ' + r.room);
      b.addEventListener('click', function () {
        $('mod-room').value = r.room;
        loadModeration();
        $('mod-action').focus();
      });
      act.appendChild(b);
      tr.append(name, td(fmt(r.viewers), 'num'), td(fmt(r.gateways), 'num'), act);
      body.appendChild(tr);
      if (focused === r.room) b.focus();
    });
  }

  // ---------- autoscaler ----------
  var SVGNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text) e.textContent = text;
    return e;
  }

  async function pollAutoscale() {
    var r = await api('GET', '/v1/autoscale/decisions');
    var list = $('as-list');
    var tl = $('as-timeline');
    if (r.status === 404) {
      st.autoscale = 'absent';
      $('as-policy').textContent = '';
      tl.textContent = '';
      tl.appendChild(svg('text', { x: 300, y: 50, 'text-anchor': 'middle', class: 'tl-empty' }, 'autoscaler not running'));
      list.textContent = '';
      var li = document.createElement('li');
      li.className = 'empty';
      li.textContent = 'Autoscaler not running: this server was started without --autoscale (or it serves no decisions).';
      list.appendChild(li);
    } else if (r.ok && r.body) {
      st.autoscale = 'running';
      renderAutoscale(r.body);
    }
    setTimeout(pollAutoscale, AUTOSCALE_MS);
  }

  function renderAutoscale(a) {
    var p = a.policy || {};
    var ready = p.measured_ready_time_s ? 'measured ready time ' + p.measured_ready_time_s.toFixed(1) + ' s' : 'ready time ' + p.ready_time_s + ' s (not measured yet)';
    $('as-policy').textContent = 'Actuator ' + (p.actuator || '?') + ' · ' + p.min + '–' + p.max + ' gateways · spare ' + (p.spare || 0) + ' · ' + ready;
    var ds = (a.decisions || []).slice().reverse(); // oldest first
    if (a.latest) ds.push(a.latest);
    var tl = $('as-timeline');
    tl.textContent = '';
    var now = Date.now();
    var span = 15 * 60 * 1000;
    var t0 = now - span;
    var maxN = Math.max(p.max || 1, 1);
    var X = function (t) { return Math.max(0, Math.min(600, ((t - t0) / span) * 600)); };
    var Y = function (n) { return 80 - (Math.min(n, maxN) / maxN) * 70; };
    tl.appendChild(svg('line', { x1: 0, y1: 80, x2: 600, y2: 80, class: 'tl-axis' }));
    var pts = ds.filter(function (d) { return Date.parse(d.at) >= t0; });
    if (pts.length) {
      var path = '';
      pts.forEach(function (d, i) {
        var x = X(Date.parse(d.at));
        path += (i ? ' H' + x.toFixed(1) + ' V' : 'M' + x.toFixed(1) + ' ') + Y(d.desired).toFixed(1);
      });
      path += ' H600';
      tl.appendChild(svg('path', { d: path, class: 'tl-desired' }));
    }
    pts.forEach(function (d) {
      if (d.action === 'none') return;
      var x = X(Date.parse(d.at));
      var up = d.action === 'scale_out';
      var m = svg('path', { d: up ? 'M' + (x - 6) + ' 20 L' + x + ' 8 L' + (x + 6) + ' 20Z' : 'M' + (x - 6) + ' 8 L' + x + ' 20 L' + (x + 6) + ' 8Z', class: up ? 'tl-out' : 'tl-in' });
      m.appendChild(svg('title', {}, d.action + ' at ' + new Date(d.at).toLocaleTimeString()));
      tl.appendChild(m);
    });
    tl.appendChild(svg('text', { x: 2, y: 89, class: 'tl-label' }, '−15 min'));
    tl.appendChild(svg('text', { x: 598, y: 89, 'text-anchor': 'end', class: 'tl-label' }, 'now'));

    var list = $('as-list');
    list.textContent = '';
    var recent = (a.decisions || []).slice(0, 8);
    if (!recent.length) {
      var li0 = document.createElement('li');
      li0.className = 'empty';
      li0.textContent = 'No decision changed anything yet.';
      list.appendChild(li0);
    }
    recent.forEach(function (d) {
      var li = document.createElement('li');
      li.className = 'act-' + d.action;
      var tm = document.createElement('time');
      tm.dateTime = d.at;
      tm.textContent = new Date(d.at).toLocaleTimeString();
      var what = d.action === 'scale_out' ? 'scale out +' + (d.add || 1) : d.action === 'scale_in' ? 'scale in −' + (d.remove || '1') : 'hold';
      li.append(tm, ' ' + what + ' · ' + d.current + ' → ' + d.desired + ' (' + d.reason + ')');
      if (d.why) {
        var why = document.createElement('span');
        why.className = 'why';
        why.textContent = d.why;
        li.append(why);
      }
      list.appendChild(li);
    });
  }

  // ---------- moderation ----------
  var FIELDS = {
    mute: ['user', 'duration', 'reason'], unmute: ['user'], ban: ['user', 'duration', 'reason'], unban: ['user'],
    kick: ['user', 'reason'], slow_mode: ['interval'], mute_all: ['on'], announce: ['text'], close: ['reason'], reopen: [],
  };
  function showFields() {
    var want = FIELDS[$('mod-action').value] || [];
    document.querySelectorAll('#mod-form [data-for]').forEach(function (f) {
      f.hidden = want.indexOf(f.dataset.for) < 0;
    });
  }
  $('mod-action').addEventListener('change', showFields);
  showFields();

  function modURL() { return '/v1/rooms/' + encodeURIComponent($('mod-room').value.trim()) + '/moderation'; }

  function modResult(text, bad) {
    var e = $('mod-result');
    e.textContent = text;
    e.className = 'mod-result' + (bad ? ' bad' : ' good');
  }

  $('mod-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var action = $('mod-action').value;
    var want = FIELDS[action] || [];
    var body = { action: action };
    if (want.indexOf('user') >= 0) body.user = $('mod-user').value.trim();
    if (want.indexOf('duration') >= 0) body.duration_s = Number($('mod-duration').value) || 0;
    if (want.indexOf('interval') >= 0) body.interval_s = Number($('mod-interval').value) || 0;
    if (want.indexOf('on') >= 0) body.on = $('mod-on').value === 'true';
    if (want.indexOf('text') >= 0) body.text = $('mod-text').value;
    if (want.indexOf('reason') >= 0 && $('mod-reason').value.trim()) body.reason = $('mod-reason').value.trim();
    var r = await api('POST', modURL(), body);
    st.lastModeration = { status: r.status, body: r.body, message: r.message };
    if (r.ok) {
      var b = r.body || {};
      var until = b.until_ms ? ' until ' + new Date(b.until_ms).toLocaleTimeString() : '';
      modResult(action + (b.user ? ' ' + b.user : '') + ' in ' + (b.room || '') + until + (b.changed === false ? ' (no change)' : ' — done'), false);
      loadModeration();
    } else {
      modResult('Refused: ' + r.message + (r.field ? ' (field ' + r.field + ')' : ''), true);
      var f = r.field && document.querySelector('#mod-form [name="' + r.field + '"]');
      if (f) f.focus();
    }
  });

  $('mod-load').addEventListener('click', loadModeration);

  async function loadModeration() {
    if (!$('mod-room').reportValidity()) return;
    var r = await api('GET', modURL());
    var box = $('mod-state');
    box.textContent = '';
    if (!r.ok) {
      box.hidden = true;
      modResult('Cannot read moderation state: ' + r.message, true);
      return;
    }
    var m = r.body || {};
    box.hidden = false;
    var p = document.createElement('p');
    p.textContent = 'Room ' + m.room + (m.anchor ? ' · anchor ' + m.anchor : '') + ' · slow mode ' + (m.slow_mode_s ? m.slow_mode_s + ' s' : 'off') +
      ' · everyone muted: ' + (m.mute_all ? 'yes' : 'no') + ' · ' + (m.closed ? 'closed' : 'open');
    box.appendChild(p);
    [['Muted', m.mutes], ['Banned', m.bans]].forEach(function (pair) {
      var h = document.createElement('h3');
      h.textContent = pair[0] + ' (' + ((pair[1] || []).length) + ')';
      var ul = document.createElement('ul');
      (pair[1] || []).forEach(function (x) {
        var li = document.createElement('li');
        li.textContent = x.user + (x.until_ms ? ' until ' + new Date(x.until_ms).toLocaleString() : ' for good') + (x.reason ? ' — ' + x.reason : '');
        ul.appendChild(li);
      });
      box.append(h, ul);
    });
  }

  // ---------- start ----------
  setToken(token);
  pollAutoscale();
})();
