// The studio page, Collect: classes, photos (files, a zip, the webcam, a phone) and the dataset check; the camera
// helpers the Try page shares.
"use strict";

const BURST_LIMIT = 50;   // frames of one burst
const HOLD_LIMIT = 200;   // frames of one hold-to-record
const HOLD_EVERY_MS = 150;

async function showCollect() {
  const p = state.project;
  const list = $("#class-list");
  list.replaceChildren();
  for (const c of p.classes) {
    list.append(element("li", { class: c.name === state.label ? "selected" : "", "data-class": c.name },
      element("button", { type: "button", class: "link", text: `${c.name} (${c.images})`,
                          onclick: () => { state.label = c.name; showCollect(); } }),
      element("button", { type: "button", class: "small secondary", title: "Rename (a used name merges)", text: "Rename",
                          onclick: () => guarded(async () => {
                            const name = prompt("Rename the class (the name of another class merges them)", c.name);
                            if (name) { await api("PATCH", `/projects/${p.id}/classes/${c.id}`, { name }); state.label = name; route(); }
                          }) }),
      element("button", { type: "button", class: "small danger", text: "Delete", onclick: () => guarded(async () => {
        if (confirm(`Delete the class ${c.name} and its ${c.images} photos?`)) {
          await api("DELETE", `/projects/${p.id}/classes/${c.id}`); route();
        }
      }) })));
  }
  $("#no-class").hidden = !!state.label;
  $("#collector").hidden = !state.label;
  if (!state.label) stopCamera();
  $("#current-class").textContent = state.label || "";
  const check = p.check;
  $("#check").replaceChildren(
    element("p", { class: check.ready ? "ok" : "error", text: check.ready ? `Ready to train: ${check.images} photos` : "Not ready yet" }),
    ...check.problems.map((t) => element("p", { class: "error", text: t })),
    ...check.warnings.map((t) => element("p", { class: "warning", text: t })),
    element("div", { class: "scroll" }, element("table", {},
      element("tr", {}, ...["class", "photos", "train", "val"].map((h) => element("th", { text: h }))),
      ...check.classes.map((c) => element("tr", {}, ...[c.name, c.images, c.train, c.val].map((v) => element("td", { text: String(v) })))))));
  if ($("#phone").open) showPhone();
  await showImages();
  if (!followers.review) await showReview();
  if (!followers.pick) await showPicks();
}

async function showImages() {
  const grid = $("#images");
  grid.replaceChildren();
  if (!state.label) return;
  const data = await guarded(() => api("GET", `/projects/${state.project.id}/images?class=${encodeURIComponent(state.label)}`));
  for (const image of data?.images || []) grid.append(thumb(image));
  if (data && !data.images.length) grid.append(element("li", { class: "empty", text: "No photos of this class yet." }));
}

// A photo with "move to class" and "delete": what the Collect grid and the Evaluate mistakes both show.
function thumb(image, caption) {
  const others = state.project.classes.map((c) => c.name);
  const move = element("select", { "aria-label": "Move to class", onchange: (event) => guarded(async () => {
    const to = event.target.value;
    await api("PATCH", `/images/${image.id}`, { class: to });
    await route();
    notice(`Moved the photo from ${image.class} to ${to}. Retrain to use the change.`);
  }) }, ...others.map((name) => { const o = element("option", { value: name, text: name }); o.selected = name === image.class; return o; }));
  return element("li", { "data-image": String(image.id) },
    element("img", { src: withToken(image.thumbnail), alt: image.source || image.class, loading: "lazy" }),
    caption ? element("p", { class: "caption", text: caption }) : null,
    move,
    element("button", { type: "button", class: "small danger", text: "Delete", onclick: () => guarded(async () => {
      if (!confirm(`Delete this photo of ${image.class}? It leaves the project (files elsewhere are untouched).`)) return;
      await api("DELETE", `/images/${image.id}`);
      await route();
      notice(`Deleted the photo of ${image.class}. Retrain to use the change.`);
    }) }));
}

$("#new-class").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded(async () => {
    const c = await api("POST", `/projects/${state.project.id}/classes`, { name: $("#new-class-name").value });
    $("#new-class-name").value = "";
    state.label = c.name;
    await route();
  });
});

async function upload(files) {
  if (!state.label) return notice("Add a class first, then its photos.", "error");
  const batch = 100;  // the server takes at most 200 photos per request
  let added = 0, duplicates = 0, errors = [];
  for (let i = 0; i < files.length; i += batch) {
    const form = new FormData();
    form.append("label", state.label);
    for (const file of files.slice(i, i + batch)) form.append("files", file, file.name);
    $("#upload-status").textContent = `Uploading ${Math.min(i + batch, files.length)} of ${files.length}...`;
    const result = await guarded(() => api("POST", `/projects/${state.project.id}/images`, form));
    if (!result) break;
    added += result.added; duplicates += result.duplicates.length; errors = errors.concat(result.errors);
  }
  $("#upload-status").textContent = `Added ${added} photo(s) to ${state.label}` +
    (duplicates ? `; ${duplicates} already in the project` : "") +
    (errors.length ? `; ${errors.length} not usable: ` + errors.map((e) => `${e.file} (${e.error})`).join(", ") : "");
  await route();
}

$("#file-input").addEventListener("change", (event) => { upload([...event.target.files]); event.target.value = ""; });
$("#zip-input").addEventListener("change", (event) => guarded(async () => {
  const form = new FormData();
  form.append("file", event.target.files[0]);
  event.target.value = "";
  $("#upload-status").textContent = "Unpacking the zip...";
  const result = await api("POST", `/projects/${state.project.id}/images:zip`, form);
  $("#upload-status").textContent = `Added ${result.added} photo(s) in ${result.classes.length} class(es): ` +
    result.classes.map((c) => `${c.class} +${c.added}`).join(", ");
  await route();
}));
function dropZone(selector, handler) {
  const node = $(selector);
  node.addEventListener("dragover", (event) => { event.preventDefault(); node.classList.add("over"); });
  node.addEventListener("dragleave", () => node.classList.remove("over"));
  node.addEventListener("drop", (event) => {
    event.preventDefault(); node.classList.remove("over");
    handler([...event.dataTransfer.files].filter((f) => f.type.startsWith("image/")));
  });
}
dropZone("#drop", upload);

// --- the camera: one stream, on until Stop (or leaving the tab); bursts, hold-to-record, live classification ---
async function startCamera(video) {
  stopCamera();
  state.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  video.srcObject = state.stream;
  video.hidden = false;
  await video.play();
  cameraControls();
}

function stopCamera() {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  clearInterval(state.liveTimer);
  state.liveTimer = null;
  for (const id of ["#camera", "#live"]) { $(id).hidden = true; $(id).srcObject = null; }
  cameraControls();
}

// The buttons say what a click does now.
function cameraControls() {
  const collecting = !!state.stream && !$("#camera").hidden;
  $("#camera-toggle").textContent = collecting ? "Stop camera" : "Start camera";
  $("#camera-controls").hidden = !collecting;
  $("#live-toggle").textContent = state.liveTimer ? "Stop live" : "Classify the camera live";
}

async function frameFile(video, name) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  return new File([blob], name, { type: "image/jpeg" });
}

$("#camera-toggle").addEventListener("click", () => guarded(async () => {
  if (state.stream) stopCamera(); else await startCamera($("#camera"));
}));

$("#burst-count").addEventListener("change", () => {
  const asked = Number($("#burst-count").value) || 1;
  const count = Math.max(1, Math.min(BURST_LIMIT, asked));
  $("#burst-count").value = count;
  $("#capture-status").textContent = asked > BURST_LIMIT ?
    `${BURST_LIMIT} frames at most per burst: hold to record for more (up to ${HOLD_LIMIT}).` : "";
});

$("#capture").addEventListener("click", () => guarded(async () => {
  $("#burst-count").dispatchEvent(new Event("change"));
  const count = Number($("#burst-count").value);
  const files = [];
  for (let i = 0; i < count && state.stream; i++) {
    files.push(await frameFile($("#camera"), `camera-${Date.now()}-${i}.jpg`));
    $("#capture-status").textContent = `captured ${i + 1} of ${count}`;
    await sleep(250);
  }
  await upload(files);
  $("#capture-status").textContent = `captured ${files.length} frame(s); the camera stays on`;
}));

// Hold to record, as Teachable Machine does: frames while the button (or Space/Enter on it) is held.
let holding = null;
async function startHold() {
  if (!state.stream || holding) return;
  const hold = holding = { files: [] };
  $("#hold").classList.add("recording");
  while (holding === hold && hold.files.length < HOLD_LIMIT) {
    const file = await frameFile($("#camera"), `camera-${Date.now()}-${hold.files.length}.jpg`);
    if (holding !== hold) break;
    hold.files.push(file);
    $("#capture-status").textContent = `recording: ${hold.files.length} frame(s)` +
      (hold.files.length >= HOLD_LIMIT ? ` (${HOLD_LIMIT} at most: let go)` : "");
    await sleep(HOLD_EVERY_MS);
  }
}
async function stopHold() {
  const hold = holding;
  if (!hold) return;
  holding = null;
  $("#hold").classList.remove("recording");
  if (!hold.files.length) return;
  await guarded(() => upload(hold.files));
  $("#capture-status").textContent = `recorded ${hold.files.length} frame(s); the camera stays on`;
}
// The button keeps the pointer until it is let go: a status line that grows and moves the button, or a finger that
// slides, must not leave a recording running with nothing to end it.
$("#hold").addEventListener("pointerdown", (event) => {
  event.preventDefault();
  $("#hold").setPointerCapture(event.pointerId);
  startHold();
});
for (const name of ["pointerup", "pointerleave", "pointercancel"]) $("#hold").addEventListener(name, stopHold);
$("#hold").addEventListener("keydown", (event) => { if ([" ", "Enter"].includes(event.key) && !event.repeat) { event.preventDefault(); startHold(); } });
$("#hold").addEventListener("keyup", (event) => { if ([" ", "Enter"].includes(event.key)) stopHold(); });
$("#hold").addEventListener("contextmenu", (event) => event.preventDefault());  // a long press on a phone

// --- from a phone: a QR code with the capture page's link (the studio must listen on the network) -------------
async function showPhone() {
  const link = await guarded(() => api("GET", `/projects/${state.project.id}/phone`));
  if (!link) return;
  $("#phone-body").replaceChildren(...(link.available ? [
    element("img", { src: link.qr, alt: "QR code of the capture page", class: "qr" }),
    element("p", { text: "Scan it with the phone's camera (same network as this computer). The page that opens " +
      "takes photos into a class of this project; they appear here." }),
    element("p", {}, element("a", { id: "phone-link", href: link.url, target: "_blank", rel: "noopener", text: "the same link" }))]
    : [element("p", { class: "muted", text: link.why })]));
}
$("#phone").addEventListener("toggle", () => { if ($("#phone").open) showPhone(); });
