// liveroom danmaku: bullet comments flying right to left across the video in
// lanes that never overlap. Plain JS, no build step; room.js uses it.
(function () {
  'use strict';

  // LiveroomDanmaku lays comments out over layer (an absolutely positioned
  // box over the video); lanes start below label. Comments are CSS
  // animations of a transform (see .dm in app.css), so moving them costs no
  // layout. opts: maxFlying (elements at once), maxQueued (waiting for a lane;
  // the oldest are dropped: live comments may be sampled, never pile up).
  window.LiveroomDanmaku = function (layer, label, opts) {
    var maxFlying = opts.maxFlying || 80;
    var maxQueued = opts.maxQueued || 150;
    var GAP_PX = 24; // between a comment's tail and the next one's head

    // Every comment moves at a speed that depends only on the layer width,
    // so comments in one lane never catch each other: a lane is free once
    // the previous comment's tail (plus a gap) has entered, and the new head
    // cannot reach the left edge before the previous comment has left (which
    // matters only when a resize changed the speed in between).
    var lanes = [];
    var laneH = 30;
    var laneTop = 0;
    var queue = [];
    var flying = 0;
    var pump = 0;

    function layout() {
      var probe = document.createElement('div');
      probe.className = 'dm';
      probe.style.visibility = 'hidden';
      probe.textContent = 'Mg';
      layer.appendChild(probe);
      laneH = Math.max(16, probe.offsetHeight + 4);
      probe.remove();
      // Lanes start below the LIVE label and leave the bottom fifth for the
      // gift pop-ups.
      laneTop = label ? label.offsetTop + label.offsetHeight + 4 : 6;
      var n = Math.max(1, Math.floor((layer.clientHeight * 0.8 - laneTop) / laneH));
      while (lanes.length < n) lanes.push({ freeAt: 0, exitAt: 0 });
      lanes.length = n;
    }

    function speed() { return Math.max(90, layer.clientWidth / 7); } // px/s

    function fly(text, mine) {
      if (document.hidden || !text) return; // nobody is watching: no backlog
      queue.push({ text: text, mine: mine });
      if (queue.length > maxQueued) queue.splice(0, queue.length - maxQueued);
      drain();
    }

    function drain() {
      clearTimeout(pump);
      pump = 0;
      while (queue.length && flying < maxFlying) {
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
      var span = document.createElement('span');
      span.textContent = item.text;
      node.appendChild(span);
      node.style.visibility = 'hidden';
      layer.appendChild(node);
      var w = node.offsetWidth;
      var v = speed();
      var travelMs = ((W + w) / v) * 1000;
      var headAcrossMs = (W / v) * 1000;
      var lane = -1;
      for (var i = 0; i < lanes.length; i++) {
        if (lanes[i].freeAt <= now && now + headAcrossMs >= lanes[i].exitAt) { lane = i; break; }
      }
      if (lane < 0) { node.remove(); return false; }
      lanes[lane].freeAt = now + ((w + GAP_PX) / v) * 1000;
      lanes[lane].exitAt = now + travelMs;
      node.style.top = (laneTop + lane * laneH) + 'px';
      node.style.setProperty('--dx', -(W + w) + 'px');
      node.style.animationDuration = travelMs + 'ms';
      node.style.visibility = '';
      node.classList.add('go'); // the animation starts only now that it has a duration
      flying++;
      var done = function () {
        if (!node.isConnected) return;
        node.remove();
        flying--;
        drain();
      };
      node.addEventListener('animationend', done, { once: true });
      node.addEventListener('animationcancel', done, { once: true });
      return true;
    }

    layout();
    if (typeof ResizeObserver === 'function') new ResizeObserver(layout).observe(layer);
    else window.addEventListener('resize', layout);

    return { fly: fly, layout: layout };
  };
})();
