// The index page's "Live now": the rooms with viewers or a live session,
// with their online counts, from GET /v1/rooms (public, no token), refreshed
// every 5 s while the page is visible. The server renders the first list;
// this keeps it current. Built with textContent only: nothing from the
// answer is parsed as HTML.
(function () {
  'use strict';
  var list = document.getElementById('live-rooms');
  var empty = document.getElementById('live-empty');
  var suggested = document.getElementById('suggested');
  if (!list) return;
  var EVERY_MS = 5000, MAX = 24, ROOM = /^[A-Za-z0-9_-]{1,64}$/;

  function card(r, i) {
    var li = document.createElement('li');
    var a = document.createElement('a');
    a.className = 'card';
    a.href = '/room/' + encodeURIComponent(r.room);
    var thumb = document.createElement('span');
    thumb.className = 'thumb thumb-' + (i % 5);
    thumb.setAttribute('aria-hidden', 'true');
    if (r.live) {
      var badge = document.createElement('span');
      badge.className = 'badge-live';
      badge.textContent = 'LIVE';
      thumb.appendChild(badge);
    }
    var title = document.createElement('span');
    title.className = 'card-title';
    title.textContent = r.room;
    var count = document.createElement('span');
    count.className = 'card-count';
    count.textContent = (r.online || 0) + ' watching';
    a.append(thumb, title, count);
    li.appendChild(a);
    return li;
  }

  function render(rooms) {
    rooms = rooms.filter(function (r) { return r && typeof r.room === 'string' && ROOM.test(r.room); }).slice(0, MAX);
    list.replaceChildren.apply(list, rooms.map(card));
    empty.hidden = rooms.length > 0;
    if (suggested) suggested.hidden = rooms.length > 0;
    window.liveroomIndex = { rooms: rooms, updated: Date.now() };
  }

  function refresh() {
    if (document.hidden) return;
    fetch('/v1/rooms', { headers: { Accept: 'application/json' } })
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (body) { if (body && Array.isArray(body.rooms)) render(body.rooms); })
      .catch(function () { /* keep the last list; try again at the next tick */ });
  }
  refresh();
  setInterval(refresh, EVERY_MS);
  document.addEventListener('visibilitychange', refresh);
}());
