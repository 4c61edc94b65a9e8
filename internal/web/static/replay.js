// liveroom replay: plays back a recorded live session with every comment,
// gift and notice appearing at the moment it was sent in the stream (its
// offset_ms). A stand-in player (no real video): a clock, a timeline with
// gift marks, play/pause, seeking, speed. Plain JS, no build step; comments
// fly through danmaku.js, like on the live room page.
//
// Data: GET /v1/rooms/R/sessions for the session's length, then
// GET /v1/rooms/R/sessions/S/replay?from_ms=&to_ms= in windows of one
// minute (the API's limit), the first one at once and the rest in the
// background, in order; playback waits ("buffering") if it gets ahead.
// Both through the liveroom SDK (listSessions, getReplay), which retries
// network errors, 503 and 429.
import { listSessions, getReplay } from './liveroom.js';

(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var room = document.body.dataset.room;
  var sid = document.body.dataset.session;
  var params = new URLSearchParams(location.search);

  var CHUNK_MS = 60000; // the replay API's largest window
  var TICK_MS = 50;
  var SEEK_STEP_MS = 5000;
  var JUMP_MS = 10000;
  var LOG_ITEMS = 50;
  var BIG_GIFTS = { rocket: 1, castle: 1, car: 1 };
  var PREFS_KEY = 'liveroom.danmaku';

  var el = {
    status: $('status-label'),
    clock: $('rp-clock'),
    play: $('rp-play'),
    bigPlay: $('rp-big-play'),
    back: $('rp-back'),
    fwd: $('rp-fwd'),
    seek: $('rp-seek'),
    marks: $('rp-marks'),
    pos: $('rp-pos'),
    dur: $('rp-dur'),
    speed: $('rp-speed'),
    danmaku: $('danmaku'),
    label: document.querySelector('.video-label'),
    flash: $('gift-flash'),
    bigGift: $('gift-big'),
    ticker: $('ticker'),
    tickerEmpty: $('ticker-empty'),
    log: $('comment-log'),
    toast: $('toast'),
    icons: $('gift-icons'),
    dmToggle: $('dm-toggle'),
    dmDensity: $('dm-density'),
  };

  // Player state. pos is in session milliseconds; while playing it is
  // basePos + (now - baseAt) * rate.
  var duration = 0;
  var rate = 1;
  var playing = false;
  var buffering = false;
  var basePos = 0;
  var baseAt = 0;
  var emitted = 0; // messages with offset < emitted have been shown
  var chunks = []; // index -> {msgs, ready}
  var dragging = false;
  var timer = 0;
  var ready = false; // the first window is in and the player positioned

  // lrReplay is read by the browser tests: what was shown, and when.
  var lr = window.lrReplay = {
    state: 'loading',
    duration: 0,
    shown: [], // {id, type, offset, at}: at is the player position when it appeared
    loadedChunks: 0,
    pos: function () { return position(); },
  };

  function fmtTime(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var ss = String(s % 60).padStart(2, '0');
    return h ? h + ':' + String(m).padStart(2, '0') + ':' + ss : m + ':' + ss;
  }

  function setState(s, label) {
    lr.state = s;
    document.body.dataset.state = s;
    el.status.textContent = label;
  }

  var toastTimer = 0;
  function toast(msg) {
    el.toast.textContent = msg;
    el.toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.toast.hidden = true; }, 4000);
  }

  function giftIcon(gift) {
    var src = el.icons.content.querySelector('[data-gift="' + (/^[a-z0-9_-]+$/i.test(gift) ? gift : '') + '"] svg') ||
      el.icons.content.querySelector('[data-gift=""] svg');
    return src.cloneNode(true);
  }

  function giftLabel(gift) {
    var s = /^[a-z0-9_-]+$/i.test(gift) && el.icons.content.querySelector('[data-gift="' + gift + '"]');
    return s ? s.dataset.label : String(gift || 'gift');
  }

  // ---------- comments (danmaku.js, same settings as the live room) ----------
  // danmaku.js times its lanes with performance.now(). On this page that
  // clock stops while the player is paused, as the comments' animations do
  // (replay.css), so after a pause the lanes still know where the frozen
  // comments are and new ones never run into them.
  var realNow = performance.now.bind(performance);
  var frozenAt = 0;
  var frozenTotal = 0;
  try {
    performance.now = function () { return (frozenAt || realNow()) - frozenTotal; };
  } catch (e) { /* read-only: lanes may then overlap briefly after a pause */ }
  // freezeClock stops (on) or restarts the lanes' clock in the next frame:
  // the comments' animations stop and restart when that frame applies the
  // player's new state, and a busy page may render it 100 ms or more after
  // the click. Moving the clock at once would leave it that far from the
  // comments, and the lanes would then place new comments onto old ones.
  var wantFrozen = false;
  var freezePending = false;
  function freezeClock(on) {
    wantFrozen = on;
    if (document.hidden) { applyFreeze(); return; } // no frames while hidden
    if (freezePending) return;
    freezePending = true;
    requestAnimationFrame(applyFreeze);
  }
  function applyFreeze() {
    freezePending = false;
    if (wantFrozen && !frozenAt) {
      frozenAt = realNow();
    } else if (!wantFrozen && frozenAt) {
      frozenTotal += realNow() - frozenAt;
      frozenAt = 0;
    }
  }

  var prefs = { on: true, density: 'normal' };
  try { Object.assign(prefs, JSON.parse(localStorage.getItem(PREFS_KEY) || '{}')); } catch (e) { /* defaults */ }
  var danmaku = window.LiveroomDanmaku(el.danmaku, el.label, { maxFlying: 80, maxQueued: 150, density: prefs.density, enabled: prefs.on });

  function showPrefs() {
    el.dmToggle.setAttribute('aria-pressed', String(prefs.on));
    var l = el.dmToggle.querySelector('.dm-toggle-label');
    if (l) l.textContent = prefs.on ? 'Comments on' : 'Comments off';
    el.dmDensity.value = prefs.density;
    el.dmDensity.disabled = !prefs.on;
  }
  function savePrefs() { try { localStorage.setItem(PREFS_KEY, JSON.stringify(prefs)); } catch (e) { /* ignore */ } }
  el.dmToggle.addEventListener('click', function () {
    prefs.on = !prefs.on;
    danmaku.setEnabled(prefs.on);
    showPrefs();
    savePrefs();
  });
  el.dmDensity.addEventListener('change', function () {
    prefs.density = el.dmDensity.value;
    danmaku.setDensity(prefs.density);
    savePrefs();
  });
  showPrefs();

  // clearScreen takes every comment and gift animation off the video (a
  // seek: what flies must be what was sent just before the new position).
  function clearScreen() {
    danmaku.setEnabled(false);
    danmaku.setEnabled(prefs.on);
    el.flash.textContent = '';
    el.bigGift.className = 'gift-big';
    el.bigGift.textContent = '';
  }

  // ---------- the ticker: every gift and event, shown once reached ----------
  // Items are built as windows load, in offset order (newest first on
  // screen), and hidden until the player reaches them, so after a seek the
  // ticker shows exactly what had happened by then.
  var tickerItems = {}; // message id -> li
  function tickerItem(m) {
    var li = document.createElement('li');
    tickerItems[m.id] = li;
    li.dataset.id = m.id;
    li.dataset.offset = m.offset_ms || 0;
    li.className = 'rp-future' + (m.type === 'notice' ? ' notice' : '');
    var t = document.createElement('span');
    t.className = 'tick-text';
    if (m.type === 'gift') {
      li.appendChild(giftIcon(m.gift));
      var n = document.createElement('span');
      n.className = 'tick-name';
      n.textContent = m.name || m.user || 'Someone';
      var c = document.createElement('span');
      c.className = 'tick-count';
      c.textContent = (m.count || 1) > 1 ? ' ×' + m.count : '';
      t.append(n, ' sent a ' + giftLabel(m.gift), c);
    } else {
      t.textContent = m.text || m.action || 'Notice';
    }
    var tm = document.createElement('button');
    tm.type = 'button';
    tm.className = 'tick-time rp-jump';
    tm.textContent = fmtTime(m.offset_ms || 0);
    tm.setAttribute('aria-label', 'Jump to ' + fmtTime(m.offset_ms || 0));
    tm.addEventListener('click', function () { seek(Math.max(0, (m.offset_ms || 0) - 1000)); });
    li.append(t, tm);
    // Newest first: before the first item with a smaller offset.
    var off = m.offset_ms || 0;
    var before = null;
    for (var x = el.ticker.firstElementChild; x; x = x.nextElementSibling) {
      if (Number(x.dataset.offset) <= off) { before = x; break; }
    }
    el.ticker.insertBefore(li, before);
  }

  function mark(m) {
    if (!duration) return;
    var d = document.createElement('span');
    d.className = 'rp-mark' + (m.type === 'notice' ? ' notice' : '');
    d.style.left = Math.min(100, (100 * (m.offset_ms || 0)) / duration) + '%';
    el.marks.appendChild(d);
  }

  function syncTicker(pos) {
    var any = false;
    for (var x = el.ticker.firstElementChild; x; x = x.nextElementSibling) {
      var future = Number(x.dataset.offset) >= pos;
      x.classList.toggle('rp-future', future);
      if (!future) any = true;
    }
    el.tickerEmpty.hidden = any;
  }

  // ---------- showing one message at its moment ----------
  var flashes = 0;
  function flashGift(m) {
    if (flashes >= 3 && el.flash.firstElementChild) { el.flash.firstElementChild.remove(); flashes--; }
    var f = document.createElement('div');
    f.className = 'flash';
    f.appendChild(giftIcon(m.gift));
    var s = document.createElement('span');
    s.textContent = (m.name || m.user || 'Someone') + ' sent a ' + giftLabel(m.gift) + ' ';
    var c = document.createElement('span');
    c.className = 'count';
    c.textContent = '×' + (m.count || 1);
    s.appendChild(c);
    f.appendChild(s);
    el.flash.appendChild(f);
    flashes++;
    setTimeout(function () { if (f.isConnected) { f.remove(); flashes--; } }, 3100);
    if (BIG_GIFTS[m.gift]) {
      el.bigGift.textContent = '';
      el.bigGift.appendChild(giftIcon(m.gift));
      el.bigGift.className = 'gift-big go gift-big-' + m.gift;
    }
  }

  function logComment(m) {
    var li = document.createElement('li');
    li.textContent = (m.name || m.user || '') + ': ' + (m.text || '');
    el.log.appendChild(li);
    while (el.log.childElementCount > LOG_ITEMS) el.log.firstElementChild.remove();
  }

  function show(m, pos) {
    lr.shown.push({ id: m.id, type: m.type, offset: m.offset_ms || 0, at: Math.round(pos) });
    var li = tickerItems[m.id];
    if (li) {
      li.classList.remove('rp-future');
      el.tickerEmpty.hidden = true;
    }
    if (lr.shown.length > 5000) lr.shown.splice(0, 1000);
    switch (m.type) {
      case 'danmaku':
        danmaku.fly(m.text || '', false, m.id);
        logComment(m);
        break;
      case 'gift':
        flashGift(m);
        break;
      case 'notice':
        if (m.action !== 'live_start' && m.action !== 'live_stop') toast(m.text || 'Notice');
        break;
    }
  }

  // emit shows the messages with from <= offset < to, in order. It reports
  // false when a window it needs is not loaded yet.
  function emit(from, to, pos) {
    for (var c = Math.floor(from / CHUNK_MS); c <= Math.floor(Math.max(from, to - 1) / CHUNK_MS); c++) {
      var ch = chunks[c];
      if (!ch || !ch.ready) return false;
      for (var i = 0; i < ch.msgs.length; i++) {
        var o = ch.msgs[i].offset_ms || 0;
        if (o >= from && o < to) show(ch.msgs[i], pos);
      }
    }
    return true;
  }

  // ---------- the clock ----------
  function position() {
    if (!playing || buffering) return basePos;
    return Math.min(duration, basePos + (realNow() - baseAt) * rate);
  }

  function rebase(pos) {
    basePos = pos;
    baseAt = realNow();
  }

  function tick() {
    var pos = position();
    var end = pos >= duration;
    // The last message (live_stop) sits exactly at the end: include it.
    var to = end ? duration + 1 : Math.floor(pos) + 1;
    if (to > emitted) {
      if (!emit(emitted, to, pos)) {
        if (!buffering) {
          buffering = true;
          rebase(pos);
          setState('loading', 'Buffering…');
        }
        return;
      }
      emitted = to;
    }
    if (buffering) {
      buffering = false;
      rebase(pos);
      setState(playing ? 'playing' : 'paused', playing ? 'Playing' : 'Paused');
    }
    render(pos);
    if (end && playing) {
      setPlaying(false);
      setState('ended', 'Ended');
    }
  }

  function render(pos) {
    el.pos.textContent = fmtTime(pos);
    el.clock.textContent = fmtTime(pos);
    if (!dragging) el.seek.value = String(Math.round(pos));
    el.seek.setAttribute('aria-valuetext', fmtTime(pos) + ' of ' + fmtTime(duration));
  }

  function setPlaying(on) {
    if (on && position() >= duration) seek(0);
    rebase(position());
    playing = on;
    el.play.setAttribute('aria-pressed', String(on));
    el.play.setAttribute('aria-label', on ? 'Pause' : 'Play');
    el.bigPlay.hidden = on;
    clearInterval(timer);
    freezeClock(!on);
    if (on) {
      timer = setInterval(tick, TICK_MS);
      setState('playing', 'Playing');
    } else {
      setState('paused', 'Paused');
    }
    tick();
  }

  function seek(ms) {
    ms = Math.max(0, Math.min(duration, Math.round(ms)));
    rebase(ms);
    emitted = ms;
    clearScreen();
    syncTicker(ms);
    render(ms);
    if (lr.state === 'ended') setState('paused', 'Paused');
    tick();
  }

  lr.seek = seek;
  lr.play = function () { setPlaying(true); };
  lr.pause = function () { setPlaying(false); };

  // ---------- controls ----------
  el.play.addEventListener('click', function () { setPlaying(!playing); });
  el.bigPlay.addEventListener('click', function () { setPlaying(true); el.play.focus(); });
  el.back.addEventListener('click', function () { seek(position() - JUMP_MS); });
  el.fwd.addEventListener('click', function () { seek(position() + JUMP_MS); });
  el.seek.addEventListener('pointerdown', function () { dragging = true; });
  el.seek.addEventListener('pointerup', function () { dragging = false; });
  el.seek.addEventListener('input', function () { seek(Number(el.seek.value)); });
  el.seek.addEventListener('change', function () { dragging = false; seek(Number(el.seek.value)); });
  el.speed.addEventListener('change', function () {
    rebase(position());
    rate = Number(el.speed.value) || 1;
  });
  document.addEventListener('keydown', function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey || lr.state === 'error' || !duration) return;
    var t = e.target;
    var tag = t && t.tagName;
    var control = tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA' || tag === 'BUTTON';
    if ((e.key === ' ' && !control) || e.key === 'k' || e.key === 'K') {
      e.preventDefault();
      setPlaying(!playing);
    } else if ((e.key === 'ArrowLeft' || e.key === 'ArrowRight') && tag !== 'SELECT') {
      // On the timeline too: its native step would be one millisecond.
      e.preventDefault();
      seek(position() + (e.key === 'ArrowLeft' ? -SEEK_STEP_MS : SEEK_STEP_MS));
    } else if (e.key === 'Home' || e.key === 'End') {
      e.preventDefault();
      seek(e.key === 'Home' ? 0 : duration);
    }
  });
  document.addEventListener('visibilitychange', function () {
    // A hidden tab would come back to a burst of comments: pause instead.
    if (document.hidden && playing) setPlaying(false);
  });

  // ---------- loading ----------
  var RETRIES = 4; // a restarting server answers 503 or nothing for a moment

  async function loadChunk(c) {
    var from = c * CHUNK_MS;
    var to = Math.min((c + 1) * CHUNK_MS, duration + 1);
    var msgs = [];
    while (from < to) {
      var a = await getReplay({ room: room, session: sid, fromMs: from, toMs: to, retries: RETRIES });
      msgs.push.apply(msgs, a.msgs || []);
      if (a.next_from_ms === undefined || a.next_from_ms === null) break;
      from = a.next_from_ms;
    }
    chunks[c] = { msgs: msgs, ready: true };
    lr.loadedChunks++;
    for (var i = 0; i < msgs.length; i++) {
      if (msgs[i].type === 'gift' || msgs[i].type === 'notice') {
        tickerItem(msgs[i]);
        mark(msgs[i]);
      }
    }
    syncTicker(emitted);
    if (ready && !playing) tick(); // a paused player waiting for this window
  }

  // showSessions links the room's other sessions (newest first, at most 10).
  function showSessions(all) {
    var others = all.filter(function (x) { return x.id !== sid; }).slice(0, 10);
    if (!others.length) return;
    var ol = $('rp-sessions');
    others.forEach(function (x) {
      var li = document.createElement('li');
      var a = document.createElement('a');
      a.href = '/replay/' + encodeURIComponent(room) + '/' + encodeURIComponent(x.id);
      a.textContent = new Date(x.started_ms).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
      var d = document.createElement('span');
      d.className = 'rp-sess-len';
      d.textContent = x.live ? ' · live now' : ' · ' + fmtTime(x.duration_ms || 0);
      li.append(a, d);
      ol.appendChild(li);
    });
    ol.parentElement.hidden = false;
  }

  async function start() {
    setState('loading', 'Loading…');
    var sessions;
    try {
      sessions = await listSessions({ room: room, retries: RETRIES });
    } catch (e) {
      setState('error', 'Cannot load: ' + e.message);
      return;
    }
    var s = sessions.find(function (x) { return x.id === sid; });
    if (!s) {
      setState('error', 'No such session in this room');
      toast('This room has no session ' + sid + '. It may have been deleted after the retention period.');
      return;
    }
    showSessions(sessions);
    duration = Math.max(1, s.duration_ms || 0);
    lr.duration = duration;
    el.dur.textContent = fmtTime(duration);
    el.seek.max = String(duration);
    var n = Math.floor(duration / CHUNK_MS) + 1;
    var startAt = Math.min(duration, Math.max(0, Number(params.get('t') || 0) * 1000));
    var first = Math.floor(startAt / CHUNK_MS);
    try {
      await loadChunk(first);
    } catch (e) {
      setState('error', 'Cannot load the replay: ' + e.message);
      return;
    }
    [el.play, el.back, el.fwd, el.seek].forEach(function (b) { b.disabled = false; });
    seek(startAt);
    ready = true;
    if (params.get('autoplay') === '0') {
      setPlaying(false);
      el.bigPlay.hidden = false;
    } else {
      setPlaying(true);
    }
    // The rest, in order, from the start position on, then what precedes it.
    for (var i = 1; i < n; i++) {
      var c = (first + i) % n;
      try {
        await loadChunk(c);
      } catch (e) {
        toast('Part of the replay could not be loaded: ' + e.message);
        chunks[c] = { msgs: [], ready: true };
      }
    }
    lr.loaded = true;
  }

  start();
})();
