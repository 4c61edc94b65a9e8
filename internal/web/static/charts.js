// liveroom charts: small line charts drawn on a canvas, for the operator
// dashboard. Plain JS, no build step, no library.
(function () {
  'use strict';

  // niceMax rounds a maximum up to 1, 2 or 5 × 10^n so the grid lines land on
  // round numbers.
  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  function short(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e7 ? 0 : 1) + 'M';
    if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + 'k';
    if (v >= 10 || v === 0) return String(Math.round(v));
    return v < 1 ? String(Math.round(v * 100) / 100) : String(Math.round(v * 10) / 10);
  }

  // LiveroomChart draws series over time on canvas. opts.series is
  // [{color}], opts.windowMs the longest span of the x axis (newest at the
  // right); until that much history exists the axis spans what there is
  // (at least 30 s), so a fresh dashboard does not squeeze its first
  // seconds into the right edge.
  // draw(points) takes [{t: ms, v: [y per series]}], oldest first. The
  // canvas follows its CSS size and the device pixel ratio.
  window.LiveroomChart = function (canvas, opts) {
    var windowMs = opts.windowMs || 120000;
    var last = [];
    var ctx = canvas.getContext('2d');
    var css = getComputedStyle(document.documentElement);
    var gridColor = css.getPropertyValue('--line').trim() || '#2a2e3b';
    var textColor = css.getPropertyValue('--muted').trim() || '#9ba1b5';

    function draw(points) {
      last = points || last;
      var dpr = window.devicePixelRatio || 1;
      var w = canvas.clientWidth, h = canvas.clientHeight;
      if (!w || !h) return;
      if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
        canvas.width = Math.round(w * dpr);
        canvas.height = Math.round(h * dpr);
      }
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, w, h);
      var padL = 40, padR = 8, padT = 8, padB = 18;
      var pw = w - padL - padR, ph = h - padT - padB;
      var now = last.length ? last[last.length - 1].t : Date.now();
      var span = last.length ? Math.min(windowMs, Math.max(30000, now - last[0].t)) : windowMs;
      var t0 = now - span;
      var hi = 0;
      last.forEach(function (p) { p.v.forEach(function (y) { if (y > hi) hi = y; }); });
      var top = niceMax(hi * 1.1);

      ctx.font = '11px system-ui, sans-serif';
      ctx.fillStyle = textColor;
      ctx.strokeStyle = gridColor;
      ctx.lineWidth = 1;
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      for (var i = 0; i <= 4; i++) {
        var y = padT + ph - (ph * i) / 4;
        ctx.beginPath();
        ctx.moveTo(padL, Math.round(y) + 0.5);
        ctx.lineTo(padL + pw, Math.round(y) + 0.5);
        ctx.stroke();
        ctx.fillText(short((top * i) / 4), padL - 6, y);
      }
      ctx.textAlign = 'center';
      ctx.textBaseline = 'top';
      var step = span > 60000 ? 30 : 10;
      for (var s = 0; s <= span / 1000; s += step) {
        var x = padL + pw - (pw * s * 1000) / span;
        ctx.fillText(s ? '−' + s + 's' : 'now', Math.min(Math.max(x, padL + 12), padL + pw - 12), padT + ph + 4);
      }

      opts.series.forEach(function (ser, k) {
        ctx.strokeStyle = ser.color;
        ctx.lineWidth = 2;
        ctx.lineJoin = 'round';
        ctx.beginPath();
        var started = false;
        last.forEach(function (p) {
          if (p.t < t0) return;
          var px = padL + ((p.t - t0) / span) * pw;
          var py = padT + ph - (Math.min(p.v[k] || 0, top) / top) * ph;
          if (!started) { ctx.moveTo(px, py); started = true; } else ctx.lineTo(px, py);
        });
        ctx.stroke();
        if (ser.fill && started) {
          ctx.lineTo(padL + pw, padT + ph);
          var first = last.find(function (p) { return p.t >= t0; });
          ctx.lineTo(padL + ((first.t - t0) / span) * pw, padT + ph);
          ctx.closePath();
          ctx.globalAlpha = 0.15;
          ctx.fillStyle = ser.color;
          ctx.fill();
          ctx.globalAlpha = 1;
        }
      });
    }

    if (typeof ResizeObserver === 'function') new ResizeObserver(function () { draw(); }).observe(canvas);
    return { draw: draw };
  };
})();
