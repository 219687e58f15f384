// The studio page, second half: train (cards, live progress), evaluate (report, label cleaning), deploy, try it.
// Loaded after studio.js, whose helpers it uses; it starts the page.
"use strict";

// --- train ----------------------------------------------------------------------------------------------------
// The hardware comes first: the project keeps it, the cards say what fits it, the recipe follows it.
async function showTargets() {
  if (!state.targets) {
    const data = await guarded(() => api("GET", "/targets"));
    if (!data) return;
    state.targets = Object.fromEntries(data.targets.map((t) => [t.name, t]));
    $("#target").replaceChildren(...data.targets.map((t) => element("option", { value: t.name,
      text: `${t.name}: ${t.description}` })));
  }
  $("#target").value = state.project.target;
  const t = state.targets[state.project.target];
  $("#target-note").textContent = `${t.memory}. Runs ${t.format} (${t.precisions.join(", then ")}). ` +
    `Its recipe: ${t.recipe.model} at ${t.recipe.image_size} px.`;
}

$("#target").addEventListener("change", () => guarded(async () => {
  state.project = await api("PATCH", `/projects/${state.project.id}`, { target: $("#target").value });
  const recipe = state.targets[state.project.target].recipe;  // the target's best recipe becomes the choice
  state.model = recipe.model;
  $("#image-size").value = String(recipe.image_size);
  await showTargets();
  await showCards();
}));
$("#image-size").addEventListener("change", () => showCards());

function fitText(fit) {
  if (!fit) return "";
  if (!fit.fits) return `does not fit ${fit.target}: ${fit.reason}`;
  const latency = fit.latency_ms == null ? "" : `, about ${fit.latency_ms.toFixed(1)} ms there (estimate)`;
  return `fits ${fit.target}: ${Math.round(fit.ram_kb)} kB RAM, ${Math.round(fit.flash_kb)} kB flash${latency}`;
}

async function showCards() {
  const query = `?target=${encodeURIComponent(state.project.target)}&image_size=${$("#image-size").value}` +
                `&classes=${Math.max(state.project.classes.length, 2)}`;
  const data = await guarded(() => api("GET", "/models" + query));
  if (!data) return;
  state.cards = data.models;
  $("#cards-source").textContent = `Expected accuracy: ${data.accuracy_source}. Latency: ${data.latency_source}` +
    (data.measuring ? " (measuring now...)" : ".");
  const usable = (m) => m.ready && (!m.fit || m.fit.fits);
  if (!state.model || !usable(data.models.find((m) => m.name === state.model) || {})) {
    // the target's recipe when it is usable here, else the first that is; what cannot fit is never chosen
    const recipe = data.models.find((m) => m.name === state.targets[state.project.target].recipe.model);
    state.model = (recipe && usable(recipe) ? recipe : data.models.find(usable) || {}).name;
  }
  const chosen = state.model;
  $("#model-cards").replaceChildren(...data.models.map((m) => element("label",
    { class: "card model" + (usable(m) ? "" : " disabled"), "data-model": m.name, "data-fits": String(!m.fit || m.fit.fits),
      title: m.why_not || (m.fit && !m.fit.fits ? fitText(m.fit) : m.description) },
    (() => { const r = element("input", { type: "radio", name: "model", value: m.name }); r.checked = m.name === chosen; r.disabled = !usable(m);
             r.addEventListener("change", () => { state.model = m.name; }); return r; })(),
    element("strong", { text: m.name }),
    element("span", { text: `${(m.params / 1e6).toFixed(1)} M params, ${m.size_mb.fp32} MB (int8 ${m.size_mb.int8} MB)` }),
    element("span", { text: m.latency_ms != null ? `${m.latency_ms} ms per photo here` : m.ready ? "latency: measuring" : m.why_not }),
    element("span", { text: Object.entries(m.expected_accuracy).map(([d, a]) => `${d}: ${pct(a)}`).join(", ") || "accuracy: not benchmarked" }),
    element("span", { class: m.fit && !m.fit.fits ? "fit error" : "fit", text: fitText(m.fit) }))));
  clearTimeout(state.cardsPoll);  // latencies are measured in the background: look again until they are all in
  if (data.measuring) state.cardsPoll = setTimeout(() => { if (!$("#view-train").hidden) showCards(); }, 3000);
}

async function showTrain() {
  await showTargets();
  await showCards();
  $("#train-problems").replaceChildren(...state.project.check.problems.map((t) => element("p", { class: "error", text: t })));
  $("#train-start").disabled = !state.project.check.ready;
  showJobList();
  const last = state.project.job_list.filter((j) => j.kind === "train").at(-1);
  if (last) watch(last.id);
}

function showJobList() {
  $("#job-list").replaceChildren(...state.project.job_list.slice().reverse().map((j) => element("li", { "data-job": String(j.id) },
    `#${j.id} ${j.kind} `, element("strong", { text: j.state }),
    j.kind === "train" && j.metrics.val ? ` val accuracy ${pct(j.metrics.val.accuracy)}` : "",
    j.kind === "train" ? ` (${j.options.model || "recipe"}, ${j.options.image_size || "recipe"} px, for ${j.options.target || "laptop"})`
      : j.options.target ? ` (for ${j.options.target})` : ` (${j.options.format}${j.options.int8 ? ", int8" : ""})`,
    j.error ? element("span", { class: "error", text: " " + j.error }) : null)));
}

$("#train-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded(async () => {
    const options = { model: state.model || document.querySelector("input[name=model]:checked")?.value || "efficientnet_lite0",
                      image_size: Number($("#image-size").value), epochs: Number($("#epochs").value) };
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
async function showDeploy() {
  const model = state.project.model;
  $("#deploy-target").hidden = $("#other-format").hidden = !model;
  $("#deploy-empty").hidden = !!model;
  await showTargets();
  const t = state.targets[state.project.target];
  $("#deploy-target-name").textContent = t.name;
  $("#deploy-target-note").textContent = `${t.format} bundle: ${t.precisions.join(", then ")}, ` +
    "each verified against the trained model; the first that keeps the accuracy is kept." +
    (t.toolchain ? ` Note: ${t.toolchain}.` : "");
  intDefault();
  const last = state.project.job_list.filter((j) => j.kind === "export").at(-1);
  if (last) showExport(last);
}

// Boards run int8 (their NPUs need it); on a laptop or phone float is the safe default (int8 is offered, verified).
const intDefault = () => { $("#export-int8").checked = ["rknn", "maixcam", "k210"].includes($("#export-format").value); };
$("#export-format").addEventListener("change", intDefault);

// A board's first export installs its toolchain: the studio says how big it is and asks first.
async function startExport(body) {
  try {
    notice("");
    return await api("POST", `/projects/${state.project.id}/export`, body);
  } catch (error) {
    if (error.code !== "needs_toolchain") throw error;
    if (!confirm(`${error.message}.\n\nInstall it now?`)) return null;
    return api("POST", `/projects/${state.project.id}/export`, { ...body, install_toolchain: true });
  }
}

function followExport(job) {
  if (!job) return;
  showExport(job);
  if (state.exportEvents) state.exportEvents.close();
  const events = state.exportEvents = new EventSource(withToken(`/api/jobs/${job.job}/events`));
  events.addEventListener("job", (e) => { const j = JSON.parse(e.data); showExport(j); if (["done", "failed", "cancelled"].includes(j.state)) events.close(); });
}

$("#deploy-start").addEventListener("click", () => guarded(async () => followExport(await startExport({}))));
$("#export-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded(async () => followExport(await startExport({ format: $("#export-format").value, int8: $("#export-int8").checked })));
});

function showExport(job) {
  $("#export-panel").hidden = false;
  $("#export-panel").dataset.state = job.state;
  $("#export-id").textContent = `#${job.id}`;
  $("#export-state").textContent = job.state;
  $("#export-stage").textContent = job.state === "running" ? job.progress.stage || "" : "";
  $("#export-error").textContent = job.error || job.metrics.problem || "";
  $("#export-cancel").hidden = !["queued", "running"].includes(job.state);
  $("#export-cancel").onclick = () => guarded(() => api("POST", `/jobs/${job.id}/cancel`));
  const kept = job.metrics.kept && job.metrics.formats[job.metrics.kept];
  $("#export-verdict").textContent = job.state !== "done" ? "" : (job.metrics.verified ? "Verified. " : "NOT verified. ") +
    (kept ? `${kept.precision_reason}. On ${kept.target}: about ${Math.round(kept.ram_kb)} kB RAM (${kept.ram_how}), ` +
            `${Math.round(kept.flash_kb)} kB flash, ` + (kept.latency_ms == null ? "latency unknown" : `${kept.latency_ms} ms (${kept.latency_source})`) +
            (kept.fit_note ? `. Warning: ${kept.fit_note}` : "") : "");
  $("#export-verdict").className = job.state === "done" && !job.metrics.verified ? "error" : "";
  const formats = job.metrics.formats || {};
  $("#export-figures").replaceChildren(...(Object.keys(formats).length ? [element("tr", {}, ...["file", "accuracy", "agrees with PyTorch", "MB"].map((h) => element("th", { text: h })))] : []),
    ...Object.entries(formats).map(([name, f]) => element("tr", {},
      ...[f.file || name, pct(f.accuracy), f.top1_agreement != null ? pct(f.top1_agreement) : "-", f.size_mb != null ? f.size_mb.toFixed(1) : "-"]
        .map((v) => element("td", { text: String(v) })))));
  const link = $("#download");
  link.hidden = !job.download;
  link.textContent = job.metrics.verified === false ? "Download the bundle (zip, NOT verified)" : "Download the bundle (zip)";
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
  if (!data) return;
  showPredictions(data, files);
  if ($("#try-explain").checked) await showHeatmaps(files.slice(0, 4));
}

// Grad-CAM: the first photos' previews become the crop the model saw, red where it found its answer.
async function showHeatmaps(files) {
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  const data = await guarded(() => api("POST", `/projects/${state.project.id}/explain`, form));
  if (!data) return;
  const previews = $("#predictions").querySelectorAll(":scope > li > img");
  data.results.forEach((r, i) => {
    if (r.heatmap && previews[i]) {
      previews[i].src = r.heatmap;
      previews[i].classList.add("heatmap");
    }
  });
}

dropZone("#try-drop", classifyFiles);
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
