// The studio page: every action is a call to the documented /api; state lives on the server, so two tabs agree.
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { project: null, label: null, cards: [], model: null, job: null, events: null, stream: null };

// A token given as #token=... (printed by `mobiclass studio` when it listens beyond 127.0.0.1) is kept for the tab.
if (location.hash.startsWith("#token=")) {
  sessionStorage.setItem("token", decodeURIComponent(location.hash.slice(7)));
  history.replaceState(null, "", location.pathname + "#/");
}
const token = sessionStorage.getItem("token");
const withToken = (url) => token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;

async function api(method, path, body) {
  // X-Mobiclass: the studio refuses a state change that does not prove it comes from this page (or a program).
  const options = { method, headers: { "X-Mobiclass": "1" } };
  if (token) options.headers.Authorization = "Bearer " + token;
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) { options.body = JSON.stringify(body); options.headers["Content-Type"] = "application/json"; }
  const response = await fetch("/api" + path, options);
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw Object.assign(new Error(data.error || `HTTP ${response.status}`), { code: data.code });
  return data;
}

function notice(text, kind = "info") {
  const box = $("#notice");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

async function guarded(action) {
  try { notice(""); return await action(); } catch (error) { notice(error.message, "error"); return undefined; }
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "onclick" || key === "onchange") node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

const pct = (x) => x == null ? "-" : (100 * x).toFixed(1) + "%";
const seconds = (s) => s == null ? "" : s < 90 ? `${Math.round(s)} s` : `${(s / 60).toFixed(1)} min`;

// --- routing: #/ (projects) and #/p/ID/TAB -------------------------------------------------------------------
async function route() {
  const match = location.hash.match(/^#\/p\/(\d+)(?:\/(\w+))?/);
  for (const view of document.querySelectorAll("main > section")) view.hidden = true;
  stopCamera();
  if (!match) { state.project = null; $("#tabs").hidden = true; $("#project-title").textContent = ""; return showProjects(); }
  const tab = match[2] || "collect";
  await loadProject(Number(match[1]));
  if (!state.project) return;
  $("#tabs").hidden = false;
  for (const link of document.querySelectorAll("#tabs a")) {
    link.href = `#/p/${state.project.id}/${link.dataset.tab}`;
    link.classList.toggle("active", link.dataset.tab === tab);
  }
  $(`#view-${tab}`).hidden = false;
  await ({ collect: showCollect, train: showTrain, evaluate: showEvaluate, deploy: showDeploy, try: showTry }[tab])();
}

async function loadProject(id) {
  const project = await guarded(() => api("GET", `/projects/${id}`));
  state.project = project || null;
  if (!project) { location.hash = "#/"; return; }
  $("#project-title").textContent = project.name;
  if (!project.classes.some((c) => c.name === state.label)) state.label = project.classes[0]?.name || null;
}

// --- projects -------------------------------------------------------------------------------------------------
async function showProjects() {
  $("#view-projects").hidden = false;
  const data = await guarded(() => api("GET", "/projects"));
  const list = $("#project-list");
  list.replaceChildren();
  for (const p of data?.projects || []) {
    const trained = p.jobs.done ? "trained" : "not trained yet";
    list.append(element("li", { class: "card", "data-project": p.name },
      element("a", { href: `#/p/${p.id}/collect`, class: "title", text: p.name }),
      element("p", { text: `${p.classes.length} classes, ${p.images} photos, ${trained}` }),
      element("button", { type: "button", class: "secondary", text: "Rename", onclick: () => guarded(async () => {
        const name = prompt("New name", p.name);
        if (name) { await api("PATCH", `/projects/${p.id}`, { name }); showProjects(); }
      }) }),
      element("button", { type: "button", class: "danger", text: "Delete", onclick: () => guarded(async () => {
        if (confirm(`Delete ${p.name} with its ${p.images} photos, models and exports?`)) {
          await api("DELETE", `/projects/${p.id}`); showProjects();
        }
      }) })));
  }
}

$("#new-project").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded(async () => {
    const project = await api("POST", "/projects", { name: $("#new-project-name").value });
    $("#new-project-name").value = "";
    location.hash = `#/p/${project.id}/collect`;
  });
});

// --- collect --------------------------------------------------------------------------------------------------
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
  $("#current-class").textContent = state.label || "- (add a class first)";
  const check = p.check;
  $("#check").replaceChildren(
    element("p", { class: check.ready ? "ok" : "error", text: check.ready ? `Ready to train: ${check.images} photos` : "Not ready yet" }),
    ...check.problems.map((t) => element("p", { class: "error", text: t })),
    ...check.warnings.map((t) => element("p", { class: "warning", text: t })),
    element("table", {}, element("tr", {}, ...["class", "photos", "train", "val"].map((h) => element("th", { text: h }))),
      ...check.classes.map((c) => element("tr", {}, ...[c.name, c.images, c.train, c.val].map((v) => element("td", { text: String(v) }))))));
  await showImages();
}

async function showImages() {
  const grid = $("#images");
  grid.replaceChildren();
  if (!state.label) return;
  const data = await guarded(() => api("GET", `/projects/${state.project.id}/images?class=${encodeURIComponent(state.label)}`));
  for (const image of data?.images || []) grid.append(thumb(image));
}

function thumb(image, caption) {
  const others = state.project.classes.map((c) => c.name);
  const move = element("select", { "aria-label": "Move to class", onchange: (event) => guarded(async () => {
    await api("PATCH", `/images/${image.id}`, { class: event.target.value }); await route();
  }) }, ...others.map((name) => { const o = element("option", { value: name, text: name }); o.selected = name === image.class; return o; }));
  return element("li", { "data-image": String(image.id) },
    element("img", { src: withToken(image.thumbnail), alt: image.source || image.class, loading: "lazy" }),
    caption ? element("p", { class: "caption", text: caption }) : null,
    move,
    element("button", { type: "button", class: "small danger", text: "Delete", onclick: () => guarded(async () => {
      await api("DELETE", `/images/${image.id}`); await route();
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

// --- the camera: burst capture into a class, or live classification --------------------------------------------
async function startCamera(video) {
  stopCamera();
  state.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  video.srcObject = state.stream;
  video.hidden = false;
  await video.play();
}

function stopCamera() {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  clearInterval(state.live);
  for (const id of ["#camera", "#live"]) $(id).hidden = true;
  $("#capture").disabled = true;
}

function frame(video) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

$("#camera-start").addEventListener("click", () => guarded(async () => {
  await startCamera($("#camera"));
  $("#capture").disabled = false;
}));
$("#capture").addEventListener("click", () => guarded(async () => {
  const count = Math.max(1, Math.min(50, Number($("#burst-count").value) || 1));
  const files = [];
  for (let i = 0; i < count; i++) {
    const blob = await frame($("#camera"));
    files.push(new File([blob], `camera-${Date.now()}-${i}.jpg`, { type: "image/jpeg" }));
    $("#capture-status").textContent = `captured ${i + 1} of ${count}`;
    await new Promise((r) => setTimeout(r, 250));
  }
  await upload(files);
  $("#capture-status").textContent = `captured ${count} frame(s)`;
}));
