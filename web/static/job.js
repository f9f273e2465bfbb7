// Job page: follow the job through the API until it ends, then reload to show the result.
// A done job's annotated video renders after the job is done: while it does, follow it through the same
// API and put the player in place of the "rendering" note when it is ready (or the reason if it failed).
// Also links the timeline to the annotated video (click a segment to seek; a playhead follows).
(function () {
  "use strict";
  var root = document.getElementById("job");
  if (!root) return;

  // Forms that ask before they are sent (delete): the page's CSP forbids inline handlers.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  function text(id, value) { var el = document.getElementById(id); if (el) el.textContent = value; }

  function formatEta(s) {
    if (s === null || s === undefined) return "";
    s = Math.round(s);
    if (s < 60) return "· about " + s + " s left";
    return "· about " + Math.floor(s / 60) + " min " + (s % 60) + " s left";
  }

  function render(job) {
    var p = job.progress || {};
    var pct = Math.round((p.fraction || 0) * 1000) / 10;
    var fill = document.getElementById("progress-fill");
    if (fill) fill.style.width = pct + "%";
    var bar = document.getElementById("progressbar");
    if (bar) bar.setAttribute("aria-valuenow", String(Math.round(pct)));
    text("stage", job.stage || job.status);
    text("frames", (p.frames_done || 0) + " / " + (p.frames_total || 0) + " frames");
    text("eta", formatEta(p.eta_s));
    var badge = document.querySelector("#status-badge .badge");
    if (badge) { badge.textContent = job.status; badge.className = "badge badge-" + job.status; }
    var order = ["queued", "extracting", "classifying", "reporting", "done"];
    var idx = order.indexOf(job.status);
    document.querySelectorAll("#steps li").forEach(function (li) {
      var i = order.indexOf(li.getAttribute("data-step"));
      li.className = i < idx ? "done" : (i === idx ? "current" : "");
      if (i === idx) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
    });
  }

  var delay = 1000, failures = 0;
  function poll() {
    fetch(root.getAttribute("data-status-url"), { headers: { "Accept": "application/json" }, cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (job) {
        failures = 0;
        render(job);
        if (job.final) { window.location.reload(); return; }
        delay = Math.min(3000, delay + 250);
        setTimeout(poll, delay);
      })
      .catch(function () {
        failures += 1;
        text("stage", "connection problem, retrying…");
        setTimeout(poll, Math.min(15000, 1000 * Math.pow(2, failures)));
      });
  }
  if (root.getAttribute("data-final") !== "true") setTimeout(poll, delay);

  // Timeline <-> video.
  var timeline = document.getElementById("timeline");
  function linkPlayer(player) {
    if (!timeline || !player) return;
    var duration = parseFloat(timeline.getAttribute("data-duration")) || 1;
    var heads = timeline.querySelectorAll(".tl-playhead");
    player.addEventListener("timeupdate", function () {
      var left = Math.min(100, 100 * player.currentTime / duration) + "%";
      heads.forEach(function (h) { h.hidden = false; h.style.left = left; });
    });
  }
  if (timeline) {
    timeline.querySelectorAll(".tl-seg").forEach(function (seg) {
      seg.addEventListener("click", function () {
        var player = document.getElementById("player");
        if (!player) return;
        player.currentTime = parseFloat(seg.getAttribute("data-start")) || 0;
        player.play && player.play().catch(function () {});
        player.scrollIntoView({ behavior: "smooth", block: "nearest" });
      });
    });
  }
  linkPlayer(document.getElementById("player"));

  // The annotated video, rendered after the job is done.
  var box = document.getElementById("annotated-video");
  function showVideo(url) {
    var player = document.createElement("video");
    player.id = "player";
    player.className = "player";
    player.controls = true;
    player.preload = "metadata";
    player.src = url;
    var download = document.createElement("a");
    download.href = url + "?download=1";
    download.textContent = "Download it";
    player.append("Your browser cannot play this video. ", download, ".");
    var pending = document.getElementById("video-pending");
    if (pending) pending.replaceWith(player); else box.append(player);
    var item = document.getElementById("video-download");
    if (item) item.hidden = false;
    linkPlayer(player);
  }
  function showVideoFailure(reason) {
    var alert = document.createElement("div");
    alert.className = "alert alert-error";
    alert.id = "video-failed";
    alert.setAttribute("role", "alert");
    var p = document.createElement("p");
    var strong = document.createElement("strong");
    strong.textContent = "The annotated video could not be rendered.";
    p.append(strong, " " + (reason || "No reason was recorded."));
    alert.append(p);
    var pending = document.getElementById("video-pending");
    if (pending) pending.replaceWith(alert); else box.append(alert);
    var item = document.getElementById("video-download");
    if (item) item.remove();
  }
  var videoDelay = 2000, videoFailures = 0;
  function pollVideo() {
    fetch(root.getAttribute("data-status-url"), { headers: { "Accept": "application/json" }, cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (job) {
        videoFailures = 0;
        var video = job.annotated_video || {};
        box.setAttribute("data-video-status", video.status || "");
        if (video.status === "ready") { showVideo(video.url || box.getAttribute("data-video-url")); return; }
        if (video.status === "failed") { showVideoFailure(video.error); return; }
        if (video.status !== "rendering") return;
        videoDelay = Math.min(5000, videoDelay + 500);
        setTimeout(pollVideo, videoDelay);
      })
      .catch(function () {
        videoFailures += 1;
        setTimeout(pollVideo, Math.min(30000, 2000 * Math.pow(2, videoFailures)));
      });
  }
  if (box && box.getAttribute("data-video-status") === "rendering") setTimeout(pollVideo, videoDelay);
})();
