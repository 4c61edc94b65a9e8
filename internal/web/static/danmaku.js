// liveroom danmaku: bullet comments flying right to left across the video in
// lanes that never overlap. Plain JS, no build step; room.js uses it.
(function () {
  'use strict';

  // Density: the share of the video's height comments may use, and how many
  // may be on screen at once relative to maxFlying.
  var DENSITY = {
    low: { area: 0.35, flying: 0.3 },
    normal: { area: 0.65, flying: 0.6 },
    high: { area: 0.85, flying: 1 },
  };

  // LiveroomDanmaku lays comments out over layer (an absolutely positioned
  // box over the video); lanes start below label. Comments are CSS
  // animations of a transform (see .dm in app.css), so moving them costs no
  // layout. opts: maxFlying (elements at once at high density), maxQueued
  // (waiting for a lane; the oldest are dropped: live comments may be
  // sampled, never pile up), durationMs (time a comment takes to cross).
  //
  // Speed grows with length: every comment crosses in about durationMs, so
  // a long one moves faster and stays readable for the same time. Lanes
  // therefore hold comments of different speeds, and a lane is given to a
  // new comment only when (1) the previous comment's tail plus a gap has
  // entered the screen (freeAt, from its width and speed) and (2) the new
  // head, at its own speed, cannot reach the left edge before the previous
  // tail has left it (exitAt). Both positions move linearly, so if the gap
  // holds at the start and when the previous comment leaves, it holds the
  // whole way: comments in a lane never touch.
  window.LiveroomDanmaku = function (layer, label, opts) {
    var maxFlyingAll = opts.maxFlying || 80;
    var maxQueued = opts.maxQueued || 150;
    var durationMs = opts.durationMs || 8000;
    var GAP_PX = 24; // between a comment's tail and the next one's head

    var lanes = [];
    var laneH = 30;
    var laneTop = 0;
    var queue = [];
    var flying = new Set(); // items on screen
    var pump = 0;
    var density = DENSITY[opts.density] ? opts.density : 'normal';
    var enabled = opts.enabled !== false;
    var stats = { launched: 0, dropped: 0 };

    function maxFlying() { return Math.max(4, Math.round(maxFlyingAll * DENSITY[density].flying)); }

    function layout() {
      var probe = document.createElement('div');
      probe.className = 'dm';
      probe.style.visibility = 'hidden';
      probe.textContent = 'Mg';
      layer.appendChild(probe);
      laneH = Math.max(16, probe.offsetHeight + 4);
      probe.remove();
      // Lanes start below the LIVE label and never reach the bottom, where
      // the gift pop-ups are.
      laneTop = label ? label.offsetTop + label.offsetHeight + 4 : 6;
      var n = Math.max(1, Math.floor((layer.clientHeight * DENSITY[density].area - laneTop) / laneH));
      while (lanes.length < n) lanes.push({ freeAt: 0, exitAt: 0 });
      lanes.length = n;
    }

    // fly queues one comment and returns its item ({text, mine, id, node});
    // the node exists once the comment is launched. Nothing is queued while
    // comments are hidden or the page is not visible (no backlog).
    function fly(text, mine, id) {
      var item = { text: text, mine: !!mine, id: id || '', node: null, cancelled: false };
      if (!enabled || document.hidden || !text) return item;
      queue.push(item);
      if (queue.length > maxQueued) stats.dropped += queue.splice(0, queue.length - maxQueued).length;
      drain();
      return item;
    }

    // cancel takes an item off the screen or out of the queue.
    function cancel(item) {
      item.cancelled = true;
      var i = queue.indexOf(item);
      if (i >= 0) queue.splice(i, 1);
      if (item.node) finish(item);
    }

    function setId(item, id) {
      item.id = id;
      if (item.node) item.node.dataset.id = id;
    }

    function drain() {
      clearTimeout(pump);
      pump = 0;
      while (queue.length && flying.size < maxFlying()) {
        if (!launch(queue[0])) break;
        queue.shift();
      }
      if (queue.length) pump = setTimeout(drain, 120);
    }

    // launch puts one comment in the first free lane, or reports false.
    function launch(item) {
      var now = performance.now();
      var W = layer.clientWidth;
      if (!W) return true; // not laid out (hidden): drop it
      var node = document.createElement('div');
      node.className = 'dm' + (item.mine ? ' mine' : '');
      if (item.id) node.dataset.id = item.id;
      var span = document.createElement('span');
      span.textContent = item.text;
      node.appendChild(span);
      node.style.visibility = 'hidden';
      layer.appendChild(node);
      var w = node.offsetWidth;
      var v = (W + w) / durationMs; // px per ms: longer comments move faster
      var travelMs = durationMs;
      var headAcrossMs = W / v;
      var lane = -1;
      for (var i = 0; i < lanes.length; i++) {
        if (lanes[i].freeAt <= now && now + headAcrossMs >= lanes[i].exitAt) { lane = i; break; }
      }
      if (lane < 0) { node.remove(); return false; }
      lanes[lane].freeAt = now + (w + GAP_PX) / v;
      lanes[lane].exitAt = now + travelMs;
      node.dataset.lane = lane;
      node.style.top = (laneTop + lane * laneH) + 'px';
      node.style.setProperty('--dx', -(W + w) + 'px');
      node.style.animationDuration = travelMs + 'ms';
      // The lanes were planned for a start at now, but a CSS animation
      // starts with the next frame, which a busy page may render late.
      // Starting it that much into its course keeps every comment where the
      // plan has it, so a late frame cannot push one onto the comment ahead.
      requestAnimationFrame(function () {
        if (item.cancelled) return;
        node.style.animationDelay = -Math.max(0, performance.now() - now) + 'ms';
        node.style.visibility = '';
        node.classList.add('go'); // the animation starts only now that it has a duration
      });
      item.node = node;
      flying.add(item);
      stats.launched++;
      var done = function () { finish(item); };
      node.addEventListener('animationend', done, { once: true });
      node.addEventListener('animationcancel', done, { once: true });
      return true;
    }

    function finish(item) {
      if (!flying.has(item)) return;
      flying.delete(item);
      item.node.remove();
      drain();
    }

    function clear() {
      queue.length = 0;
      flying.forEach(function (item) { item.node.remove(); });
      flying.clear();
      lanes.forEach(function (l) { l.freeAt = 0; l.exitAt = 0; });
    }

    // setEnabled shows or hides comments; hiding clears the screen.
    function setEnabled(on) {
      enabled = !!on;
      layer.hidden = !enabled;
      if (!enabled) clear();
    }

    // setDensity picks low, normal or high.
    function setDensity(d) {
      if (!DENSITY[d]) return;
      density = d;
      layout();
      drain();
    }

    layout();
    if (typeof ResizeObserver === 'function') new ResizeObserver(layout).observe(layer);
    else window.addEventListener('resize', layout);

    return {
      fly: fly, cancel: cancel, setId: setId, layout: layout, setEnabled: setEnabled, setDensity: setDensity,
      stats: function () { return { launched: stats.launched, dropped: stats.dropped, flying: flying.size, queued: queue.length, lanes: lanes.length }; },
    };
  };
})();
