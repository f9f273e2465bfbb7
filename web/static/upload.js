// Upload form: drag and drop, the chosen file's name, a size check, and the upload itself sent with
// XMLHttpRequest so the page shows its progress (bytes sent of the total, percent) with a Cancel button.
// The server answers the form as it does without JavaScript: a redirect to the job page (followed here),
// or the form again / an error page with the reason, which is shown on this page (the file and settings stay).
// Without JavaScript the form posts normally.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var input = document.getElementById("video");
  var drop = document.getElementById("drop");
  var nameEl = document.getElementById("file-name");
  var button = document.getElementById("submit");
  var box = document.getElementById("upload-progress");
  var bar = document.getElementById("upload-bar");
  var fill = document.getElementById("upload-fill");
  var statusEl = document.getElementById("upload-status");
  var cancel = document.getElementById("upload-cancel");
  var errorBox = document.getElementById("upload-error");
  var buttonText = button.textContent;
  var chosen = null; // the file to send: from the file input or a drop
  var xhr = null;

  function formatBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KB";
    return (n / 1048576).toFixed(1) + " MB";
  }

  function choose(file) {
    chosen = file || null;
    nameEl.textContent = chosen ? chosen.name + " (" + formatBytes(chosen.size) + ")" : "";
    hideError();
  }

  function hideError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
  }

  // message: text; link: optional {href, text} shown after it.
  function showError(message, link) {
    errorBox.textContent = "";
    var p = document.createElement("p");
    p.textContent = message;
    errorBox.append(p);
    if (link) {
      var lp = document.createElement("p");
      var a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      lp.append(a);
      errorBox.append(lp);
    }
    errorBox.hidden = false;
    errorBox.focus();
  }

  function setBusy(busy) {
    button.disabled = busy;
    input.disabled = busy;
    button.textContent = busy ? "Uploading…" : buttonText;
    drop.classList.toggle("busy", busy);
  }

  // loaded / total: bytes of the request (the file and the form's few fields); shown in bytes of the file.
  function setProgress(loaded, total, fileSize) {
    var fraction = total ? Math.min(1, loaded / total) : 0;
    var pct = Math.floor(100 * fraction);
    fill.style.width = pct + "%";
    bar.setAttribute("aria-valuenow", String(pct));
    statusEl.textContent = formatBytes(Math.round(fraction * fileSize)) + " of " + formatBytes(fileSize) +
      " sent · " + pct + " %";
  }

  function resetProgress() {
    box.hidden = true;
    fill.style.width = "0%";
    bar.setAttribute("aria-valuenow", "0");
    statusEl.textContent = "";
    cancel.hidden = false;
  }

  input.addEventListener("change", function () { choose(input.files && input.files[0]); });

  ["dragenter", "dragover"].forEach(function (ev) {
    drop.addEventListener(ev, function (e) {
      e.preventDefault();
      if (!xhr) drop.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (ev) {
    drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  function dropped(e) {
    if (xhr || !e.dataTransfer || !e.dataTransfer.files.length) return;
    var file = e.dataTransfer.files[0];
    try { input.files = e.dataTransfer.files; } catch (err) { /* older browsers: sent from `chosen` */ }
    choose(file);
  }
  drop.addEventListener("drop", dropped);
  // A file dropped beside the drop zone is taken too, instead of the browser leaving the page to open it.
  document.addEventListener("dragover", function (e) { e.preventDefault(); });
  document.addEventListener("drop", function (e) {
    e.preventDefault();
    if (!drop.contains(e.target)) dropped(e);
  });

  // The reason the server gave, from the HTML it answered with: the form's error alerts, or an error
  // page's title and message. Also the link to a job recorded as failed (queue unavailable).
  function serverError(status, html) {
    var doc = new DOMParser().parseFromString(html || "", "text/html");
    var main = doc.querySelector("main") || doc.body;
    var parts = [];
    if (main) {
      main.querySelectorAll(".alert-error").forEach(function (el) { parts.push(el.textContent.trim()); });
      if (!parts.length) {
        var title = main.querySelector("h1"), lead = main.querySelector(".lead");
        if (title && lead) parts.push(title.textContent.trim() + ": " + lead.textContent.trim());
      }
    }
    var link = null;
    var jobLink = main && main.querySelector(".alert-info a[href*='/jobs/']");
    if (jobLink) link = { href: jobLink.getAttribute("href"), text: "See the failed job’s page" };
    var message = parts.filter(Boolean).join(" ") ||
      "The upload was refused (HTTP " + status + "). Please try again.";
    return { message: message, link: link };
  }

  function tooLarge(file) {
    var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10) || 0;
    return maxBytes > 0 && file.size > maxBytes;
  }
  function tooLargeMessage() {
    return "The file is too large: uploads are limited to " + form.getAttribute("data-max-mb") + " MB.";
  }

  cancel.addEventListener("click", function () {
    if (xhr) xhr.abort();
  });

  form.addEventListener("submit", function (e) {
    if (!window.XMLHttpRequest || !window.FormData || !window.DOMParser) return; // plain form post
    e.preventDefault();
    if (xhr) return;
    var file = chosen || (input.files && input.files[0]);
    if (!file) {
      showError("Choose a video file first.");
      input.focus();
      return;
    }
    if (tooLarge(file)) {
      showError(tooLargeMessage());
      return;
    }
    hideError();
    var data = new FormData(form);
    data.set("video", file, file.name);

    var request = xhr = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "text/html");
    setBusy(true);
    box.hidden = false;
    cancel.hidden = false;
    setProgress(0, 1, file.size);

    request.upload.addEventListener("progress", function (ev) {
      if (ev.lengthComputable) setProgress(ev.loaded, ev.total, file.size);
    });
    request.upload.addEventListener("load", function () {
      // Sent: the server now checks the video and creates the job; too late to cancel.
      cancel.hidden = true;
      fill.style.width = "100%";
      bar.setAttribute("aria-valuenow", "100");
      statusEl.textContent = formatBytes(file.size) + " sent · 100 % · checking the video…";
    });

    function finish() {
      xhr = null;
      setBusy(false);
      resetProgress();
    }

    request.addEventListener("load", function () {
      var url = request.responseURL || "";
      if (request.status >= 200 && request.status < 300 && url && url !== form.action) {
        statusEl.textContent = "Uploaded · opening the job…";
        window.location.assign(url); // the job page, with the job's own progress
        return;
      }
      finish();
      var err = serverError(request.status, request.responseText);
      showError(err.message, err.link);
    });
    request.addEventListener("abort", function () {
      finish();
      showError("Upload cancelled. The file is still selected: choose “Upload and analyse” to send it again.");
    });
    request.addEventListener("error", function () {
      finish();
      showError(tooLarge(file) ? tooLargeMessage()
        : "The upload did not reach the server. Check the connection and try again.");
    });
    request.send(data);
  });
})();
