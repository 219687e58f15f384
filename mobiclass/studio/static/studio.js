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
  const options = { method, headers: {} };
  if (token) options.headers.Authorization = "Bearer " + token;
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) { options.body = JSON.stringify(body); options.headers["Content-Type"] = "application/json"; }
  const response = await fetch("/api" + path, options);
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
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
for (const [zone, handler] of [["#drop", upload], ["#try-drop", classifyFiles]]) {
  const node = $(zone);
  node.addEventListener("dragover", (event) => { event.preventDefault(); node.classList.add("over"); });
  node.addEventListener("dragleave", () => node.classList.remove("over"));
  node.addEventListener("drop", (event) => {
    event.preventDefault(); node.classList.remove("over");
    handler([...event.dataTransfer.files].filter((f) => f.type.startsWith("image/")));
  });
}

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

// --- train ----------------------------------------------------------------------------------------------------
async function showTrain() {
  const data = await guarded(() => api("GET", "/models"));
  if (data) {
    state.cards = data.models;
    $("#cards-source").textContent = `Expected accuracy: ${data.accuracy_source}. Latency: ${data.latency_source}` +
      (data.measuring ? " (measuring now...)" : ".");
    const chosen = state.model || "efficientnet_lite0";
    $("#model-cards").replaceChildren(...data.models.map((m) => element("label",
      { class: "card model" + (m.ready ? "" : " disabled"), "data-model": m.name, title: m.why_not || m.description },
      (() => { const r = element("input", { type: "radio", name: "model", value: m.name }); r.checked = m.name === chosen; r.disabled = !m.ready;
               r.addEventListener("change", () => { state.model = m.name; }); return r; })(),
      element("strong", { text: m.name }),
      element("span", { text: `${(m.params / 1e6).toFixed(1)} M params, ${m.size_mb.fp32} MB (int8 ${m.size_mb.int8} MB)` }),
      element("span", { text: m.latency_ms != null ? `${m.latency_ms} ms per photo here` : m.ready ? "latency: measuring" : m.why_not }),
      element("span", { text: Object.entries(m.expected_accuracy).map(([d, a]) => `${d}: ${pct(a)}`).join(", ") || "accuracy: not benchmarked" }))));
  }
  $("#train-problems").replaceChildren(...state.project.check.problems.map((t) => element("p", { class: "error", text: t })));
  $("#train-start").disabled = !state.project.check.ready;
  showJobList();
  const running = state.project.job_list.filter((j) => j.kind === "train").at(-1);
  if (running) watch(running.id);
}

function showJobList() {
  $("#job-list").replaceChildren(...state.project.job_list.slice().reverse().map((j) => element("li", { "data-job": String(j.id) },
    `#${j.id} ${j.kind} `, element("strong", { text: j.state }),
    j.kind === "train" && j.metrics.val ? ` val accuracy ${pct(j.metrics.val.accuracy)}` : "",
    j.kind === "train" ? ` (${j.options.model}, ${j.options.image_size || 224} px)` : ` (${j.options.format}${j.options.int8 ? ", int8" : ""})`,
    j.error ? element("span", { class: "error", text: " " + j.error }) : null)));
}

$("#train-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded(async () => {
    const options = { model: state.model || document.querySelector("input[name=model]:checked")?.value || "efficientnet_lite0",
                      image_size: Number($("#image-size").value), epochs: Number($("#epochs").value), board: $("#board").value };
    const job = await api("POST", `/projects/${state.project.id}/train`, options);
    await loadProject(state.project.id);
    showJobList();
    watch(job.job);
  });
});

function watch(jobId) {
  if (state.events) state.events.close();
  $("#job-panel").hidden = false;
  state.events = new EventSource(withToken(`/api/jobs/${jobId}/events`));
  state.events.addEventListener("job", (event) => showJob(JSON.parse(event.data)));
  state.events.onerror = () => { state.events.close(); };
}

function showJob(job) {
  const p = job.progress || {};
  $("#job-id").textContent = `#${job.id}`;
  $("#job-state").textContent = job.state;
  $("#job-panel").dataset.state = job.state;
  const fraction = p.total ? p.done / p.total : job.state === "done" ? 1 : 0;
  $("#job-bar").style.width = `${Math.round(100 * fraction)}%`;
  const parts = [p.stage, p.total ? `${p.done}/${p.total}` : "", p.rate ? `${p.rate.toFixed(0)} img/s` : "",
                 p.job_eta_s != null && job.state === "running" ? `about ${seconds(p.job_eta_s)} left` : "",
                 p.resumed ? "(resumed after a restart)" : ""];
  $("#job-stage").textContent = parts.filter(Boolean).join(" · ");
  $("#job-error").textContent = job.error || "";
  $("#job-cancel").hidden = !["queued", "running"].includes(job.state);
  $("#job-cancel").onclick = () => guarded(() => api("POST", `/jobs/${job.id}/cancel`));
  $("#history tbody").replaceChildren(...(p.history || []).map((r) => element("tr", {},
    ...[r.epoch, r.stage, r.train_loss.toFixed(3), pct(r.train_accuracy), pct(r.val_accuracy), pct(r.val_macro_f1),
        Math.round(r.images_per_s), r.seconds.toFixed(1)].map((v) => element("td", { text: String(v) })))));
  if (job.state === "done" && job.metrics.val) {
    $("#job-stage").textContent = `Done: val accuracy ${pct(job.metrics.val.accuracy)}, macro-F1 ${pct(job.metrics.val.macro_f1)}. `;
    $("#job-stage").append(element("a", { href: `#/p/${job.project}/evaluate`, text: "Open the report" }));
  }
  if (["done", "failed", "cancelled"].includes(job.state) && state.project) {
    loadProject(state.project.id).then(showJobList);
  }
}

// --- evaluate -------------------------------------------------------------------------------------------------
async function showEvaluate() {
  const model = state.project.model;
  $("#report").hidden = !model;
  $("#report-empty").hidden = !!model;
  if (!model) return;
  const r = await guarded(() => api("GET", `/jobs/${model.id}/report`));
  if (!r) return;
  $("#report-figures").replaceChildren(
    ...[["accuracy", pct(r.accuracy)], ["macro-F1", pct(r.macro_f1)], ["photos", r.count],
        ["calibration error (ECE)", pct(r.ece)], ["model", `job #${r.job}: ${model.options.model}`]]
      .map(([k, v]) => element("div", { class: "figure" }, element("span", { text: k }), element("strong", { text: String(v) }))));
  $("#per-class").replaceChildren(element("tr", {}, ...["class", "precision", "recall", "F1", "photos"].map((h) => element("th", { text: h }))),
    ...Object.entries(r.per_class).map(([name, m]) => element("tr", {},
      ...[name, pct(m.precision), pct(m.recall), pct(m.f1), m.support].map((v) => element("td", { text: String(v) })))));
  $("#confusion").replaceChildren(element("tr", {}, element("th", { text: "" }), ...r.classes.map((c) => element("th", { text: c }))),
    ...r.confusion_matrix.map((row, i) => element("tr", {}, element("th", { text: r.classes[i] }),
      ...row.map((n, j) => element("td", { class: n ? (i === j ? "hit" : "miss") : "", text: String(n) })))));
  $("#mistakes").replaceChildren(...r.mistakes.map((m) => m.image ? thumb(m.image, `${m.true} taken for ${m.predicted} (${pct(m.confidence)})`)
    : element("li", { text: `${m.true} taken for ${m.predicted}: photo since deleted` })));
  if (!r.mistakes.length) $("#mistakes").append(element("li", { text: "No mistakes on the validation photos." }));
}

$("#retrain").addEventListener("click", () => guarded(async () => {
  const options = { ...state.project.model.options };
  for (const key of ["resume"]) delete options[key];
  const job = await api("POST", `/projects/${state.project.id}/train`, options);
  location.hash = `#/p/${state.project.id}/train`;
  setTimeout(() => watch(job.job), 300);
}));

// --- deploy ---------------------------------------------------------------------------------------------------
const boardFormat = { laptop: "onnx", phone: "tflite", "raspberry-pi": "ncnn", rockchip: "rknn", maixcam: "maixcam", k210: "k210" };

async function showDeploy() {
  const model = state.project.model;
  $("#export-form").hidden = !model;
  $("#deploy-empty").hidden = !!model;
  if (model) $("#export-format").value = boardFormat[model.options.board] || "onnx";
  const last = state.project.job_list.filter((j) => j.kind === "export").at(-1);
  if (last) showExport(last);
}

$("#export-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded(async () => {
    const job = await api("POST", `/projects/${state.project.id}/export`,
                          { format: $("#export-format").value, int8: $("#export-int8").checked });
    showExport(job);
    const events = new EventSource(withToken(`/api/jobs/${job.job}/events`));
    events.addEventListener("job", (e) => { const j = JSON.parse(e.data); showExport(j); if (["done", "failed", "cancelled"].includes(j.state)) events.close(); });
  });
});

function showExport(job) {
  $("#export-panel").hidden = false;
  $("#export-panel").dataset.state = job.state;
  $("#export-id").textContent = `#${job.id}`;
  $("#export-state").textContent = job.state;
  $("#export-stage").textContent = job.state === "running" ? job.progress.stage || "" : "";
  $("#export-error").textContent = job.error || "";
  const formats = job.metrics.formats || {};
  $("#export-figures").replaceChildren(...(Object.keys(formats).length ? [element("tr", {}, ...["file", "accuracy", "agrees with PyTorch", "MB"].map((h) => element("th", { text: h })))] : []),
    ...Object.entries(formats).map(([name, f]) => element("tr", {},
      ...[f.file || name, pct(f.accuracy), f.top1_agreement != null ? pct(f.top1_agreement) : "-", f.size_mb != null ? f.size_mb.toFixed(1) : "-"]
        .map((v) => element("td", { text: String(v) })))));
  const link = $("#download");
  link.hidden = !job.download;
  if (job.download) { link.href = withToken(job.download); link.setAttribute("download", ""); }
}

// --- try it ---------------------------------------------------------------------------------------------------
async function showTry() {
  const model = state.project.model;
  $("#try-empty").hidden = !!model;
}

async function classify(files) {
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  return api("POST", `/projects/${state.project.id}/predict`, form);
}

function showPredictions(data, files) {
  $("#predictions").replaceChildren(...data.results.map((r, i) => element("li", {},
    files[i] ? element("img", { src: URL.createObjectURL(files[i]), alt: r.path }) : null,
    element("div", {}, element("strong", { text: r.error ? r.path : `${r.label} ${pct(r.confidence)}` }),
      r.error ? element("p", { class: "error", text: r.error }) :
        element("ol", {}, ...r.top_k.map((t) => element("li", { text: `${t.label} ${pct(t.confidence)}` }))),
      element("p", { class: "muted", text: `${data.latency_ms} ms for the request (${data.engine})` })))));
}

async function classifyFiles(files) {
  if (!files.length) return;
  const data = await guarded(() => classify(files.slice(0, 32)));
  if (data) showPredictions(data, files);
}

$("#try-input").addEventListener("change", (event) => { classifyFiles([...event.target.files]); event.target.value = ""; });
$("#live-start").addEventListener("click", () => guarded(async () => {
  await startCamera($("#live"));
  let busy = false;
  state.live = setInterval(async () => {
    if (busy || !state.stream) return;
    busy = true;
    const file = new File([await frame($("#live"))], "camera.jpg", { type: "image/jpeg" });
    const data = await guarded(() => classify([file]));
    if (data) showPredictions(data, []);
    busy = false;
  }, 500);
}));

// Another tab may have changed the project: read it again when this one comes back.
document.addEventListener("visibilitychange", () => { if (!document.hidden) route(); });
window.addEventListener("hashchange", route);
route();
