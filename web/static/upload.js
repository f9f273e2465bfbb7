// Upload form: drag and drop, chosen file name, client-side checks and upload progress.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var input = document.getElementById("video");
  var drop = document.getElementById("drop");
  var nameEl = document.getElementById("file-name");
  var button = document.getElementById("submit");

  function showName() {
    var f = input.files && input.files[0];
    nameEl.textContent = f ? f.name + " (" + (f.size / 1048576).toFixed(1) + " MB)" : "";
  }
  input.addEventListener("change", showName);

  ["dragenter", "dragover"].forEach(function (ev) {
    drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (ev) {
    drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (e) {
    if (e.dataTransfer && e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      showName();
    }
  });

  // Send with XHR to show upload progress; the server answers with the job page or the form again.
  form.addEventListener("submit", function (e) {
    if (!input.files || !input.files.length) {
      e.preventDefault();
      nameEl.textContent = "Choose a video file first.";
      input.focus();
      return;
    }
    if (!window.XMLHttpRequest || !window.FormData) return;
    e.preventDefault();
    var bar = document.getElementById("upload-progress");
    var fill = bar.querySelector(".progress-bar");
    bar.hidden = false;
    button.disabled = true;
    button.textContent = "Uploading…";
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", function (ev) {
      if (ev.lengthComputable) fill.style.width = (100 * ev.loaded / ev.total).toFixed(1) + "%";
    });
    xhr.addEventListener("load", function () {
      if (xhr.responseURL && xhr.responseURL !== form.action && xhr.status < 400) {
        window.location.assign(xhr.responseURL);
        return;
      }
      document.open(); document.write(xhr.responseText); document.close();
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      button.textContent = "Upload and analyse";
      nameEl.textContent = "The upload did not reach the server. Check the connection and try again.";
    });
    xhr.send(new FormData(form));
  });
})();
