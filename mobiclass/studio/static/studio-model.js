// The studio page, after training: evaluate (report, label cleaning), deploy (a verified bundle), try it. Loaded
// last; it starts the page.
"use strict";

// --- evaluate -------------------------------------------------------------------------------------------------
// One accuracy per model: the evaluation's, which the job list, the training result and the deploy table repeat.
async function showEvaluate() {
  const model = state.project.model;
  $("#report").hidden = !model;
  $("#report-empty").hidden = !!model;
  if (!model) return;
  const r = await guarded(() => api("GET", `/jobs/${model.id}/report`));
  if (!r) return;
  $("#review-link").href = `#/p/${state.project.id}/collect`;
  const ending = model.metrics.ending;
  $("#report-ending").textContent = `Model of training job #${r.job} (${model.options.model || "the recipe"}): ` +
    (ending ? `${ending}.` : "");
  $("#report-figures").replaceChildren(
    ...[["accuracy", pct(r.accuracy)], ["validation photos", r.count], ["macro-F1 (classes count equally)", pct(r.macro_f1)],
        ["calibration error", pct(r.ece)]]
      .map(([k, v]) => element("div", { class: "figure", "data-figure": k }, element("span", { text: k }), element("strong", { text: String(v) }))));
  $("#calibration-words").textContent = calibrationWords(r.ece);
  $("#per-class").replaceChildren(element("tr", {}, ...["class", "precision", "recall", "F1", "photos"].map((h) => element("th", { text: h }))),
    ...Object.entries(r.per_class).map(([name, m]) => element("tr", {},
      ...[name, pct(m.precision), pct(m.recall), pct(m.f1), m.support].map((v) => element("td", { text: String(v) })))));
  $("#confusion").replaceChildren(element("tr", {}, element("th", { text: "" }), ...r.classes.map((c) => element("th", { text: c }))),
    ...r.confusion_matrix.map((row, i) => element("tr", {}, element("th", { text: r.classes[i] }),
      ...row.map((n, j) => element("td", { class: n ? (i === j ? "hit" : "miss") : "", text: String(n) })))));
  $("#mistakes").replaceChildren(...r.mistakes.map((m) => m.image ? thumb(m.image, `${m.true} taken for ${m.predicted} (${pct(m.confidence)})`)
    : element("li", { text: `${m.true} taken for ${m.predicted}: photo since deleted` })));
  if (!r.mistakes.length) $("#mistakes").append(element("li", { class: "empty", text: "No mistakes on the validation photos." }));
}

// Calibration error in words: how far the confidence it states is from how often it is right.
function calibrationWords(ece) {
  if (ece == null) return "";
  const points = (100 * ece).toFixed(1);
  if (ece <= 0.05) return `Its confidence can be read as a chance: when it says 90 %, it is right about 9 times in 10 ` +
    `(on these photos its confidence is off by ${points} points on average).`;
  return `Read its confidence with care: on these photos it is off by ${points} points on average (when it says 90 %, ` +
    `it may be right only ${Math.max(0, Math.round(90 - 100 * ece))} to ${Math.min(100, Math.round(90 + 100 * ece))} times in 100).`;
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
  $("#export-panel").hidden = !last;
  if (last) follow("export", last.id, showExport);  // a running export goes on showing its stages
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

async function followExport(started) {
  if (!started) return;
  await loadProject(state.project.id);
  follow("export", started.job, showExport);
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
  // The sources of the figures (long, exact) are a hover away; the sentence says what kind of figure each is.
  const kind = (source) => /^measured/.test(source || "") ? "measured" : "estimate";
  $("#export-verdict").textContent = job.state !== "done" ? "" : (job.metrics.verified ? "Verified. " : "NOT verified. ") +
    (kept ? `${kept.precision_reason}. On ${kept.target}: about ${Math.round(kept.ram_kb)} kB RAM (${kept.ram_how}), ` +
            `${Math.round(kept.flash_kb)} kB flash, ` + (kept.latency_ms == null ? "speed unknown" :
            `${Number(kept.latency_ms.toPrecision(3))} ms per photo (${kind(kept.latency_source)})`) +
            (kept.fit_note ? `. Warning: ${kept.fit_note}` : "") : "");
  $("#export-verdict").title = kept ? `latency: ${kept.latency_source}` : "";
  $("#export-verdict").className = job.state === "done" && !job.metrics.verified ? "error" : "";
  const m = job.metrics;
  $("#export-photos").textContent = m.verified_on ? `Every row: the same ${m.verified_on} validation photos` +
    (m.unreadable ? ` (${m.unreadable} more were deleted since training)` : "") + "." : "";
  const formats = m.formats || {};
  $("#export-figures").replaceChildren(...(Object.keys(formats).length ? [element("tr", {}, ...["model", "accuracy", "same answer as the trained model", "MB"].map((h) => element("th", { text: h })))] : []),
    ...Object.entries(formats).map(([name, f]) => element("tr", { "data-format": name },
      ...[name === "pytorch" ? "the trained model (PyTorch)" : f.file || name, pct(f.accuracy),
          f.top1_agreement != null ? pct(f.top1_agreement) : "-", f.size_mb != null ? f.size_mb.toFixed(1) : "-"]
        .map((v) => element("td", { text: String(v) })))));
  const link = $("#download");
  link.hidden = !job.download;
  link.textContent = job.metrics.verified === false ? "Download the bundle (zip, NOT verified)" : "Download the bundle (zip)";
  if (job.download) { link.href = withToken(job.download); link.setAttribute("download", ""); }
}

// --- try it ---------------------------------------------------------------------------------------------------
async function showTry() {
  const p = state.project;
  const running = p.model ? null : p.job_list.map(latest).find((j) => j.kind === "train" && j.state === "running" &&
                                                                     (j.progress.history || []).length);
  $("#try-empty").hidden = !!p.model || !!running;
  $("#try-provisional").hidden = !running;
  $("#try-provisional").textContent = running ? `Using the best model so far of training job #${running.id}: it is ` +
    "still training, and Try switches to the final model when training ends." : "";
}

const threshold = () => Number($("#min-confidence").value) / 100;
$("#min-confidence").value = localStorage.getItem("min-confidence") ?? "50";
function showThreshold() {
  $("#min-confidence-value").textContent = `${$("#min-confidence").value} %`;
  localStorage.setItem("min-confidence", $("#min-confidence").value);
}
$("#min-confidence").addEventListener("input", showThreshold);
showThreshold();

async function classify(files) {
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  return api("POST", `/projects/${state.project.id}/predict?min_confidence=${threshold()}`, form);
}

function answer(r) {
  if (r.error) return element("strong", { class: "error", text: r.path });
  if (!r.unsure) return element("strong", { text: `${r.label} ${pct(r.confidence)}` });
  return element("strong", { class: "unsure", text: `unsure: best guess ${r.top_k[0].label} ${pct(r.top_k[0].confidence)}, ` +
    `under the ${$("#min-confidence").value} % threshold` });
}

function showPredictions(data, files) {
  $("#predictions").replaceChildren(...data.results.map((r, i) => element("li", { "data-unsure": String(!!r.unsure) },
    files[i] ? element("img", { src: URL.createObjectURL(files[i]), alt: r.path }) : null,
    element("div", {}, answer(r),
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
$("#live-toggle").addEventListener("click", () => guarded(async () => {
  if (state.liveTimer) { stopCamera(); return; }
  await startCamera($("#live"));
  let busy = false;
  state.liveTimer = setInterval(async () => {
    if (busy || !state.stream) return;
    busy = true;
    const data = await guarded(async () => classify([await frameFile($("#live"), "camera.jpg")]));
    if (data && state.liveTimer) showPredictions(data, []);
    busy = false;
  }, 500);
  cameraControls();
}));

// Another tab may have changed the project: read it again when this one comes back.
document.addEventListener("visibilitychange", () => { if (!document.hidden) route(); });
window.addEventListener("hashchange", route);
route();
