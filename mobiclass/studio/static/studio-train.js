// The studio page, Train: the hardware, the architecture cards, and a training job you can watch (progress, time
// left, loss and accuracy curves, one row per epoch, how it ended), with the jobs list following the same records.
"use strict";

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

const SETS = { "flowers-mini": "flowers", "fruits-mini": "fruits" };

async function showCards() {
  const query = `?target=${encodeURIComponent(state.project.target)}&image_size=${$("#image-size").value}` +
                `&classes=${Math.max(state.project.classes.length, 2)}`;
  const data = await guarded(() => api("GET", "/models" + query));
  if (!data) return;
  state.cards = data.models;
  $("#cards-source").textContent = `Expected accuracy: ${data.accuracy_note}.` +
    (data.measuring ? " Speeds on this machine: measuring now..." : "");
  $("#cards-source").title = `${data.accuracy_source}; latency: ${data.latency_source}`;
  const usable = (m) => m.choosable && (!m.fit || m.fit.fits);
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
    element("span", { text: `${(m.params / 1e6).toFixed(1)} M parameters, ${m.size_mb.fp32} MB (int8: ${m.size_mb.int8} MB)` }),
    element("span", { text: m.latency_ms != null ? `${m.latency_ms} ms per photo on this machine` :
                            m.ready ? "speed here: measuring..." : "" }),
    element("span", { text: Object.entries(m.expected_accuracy).map(([d, a]) => `${pct(a)} on ${SETS[d] || d}`).join(", ")
                            || "accuracy: not measured by our benchmark yet" }),
    m.why_not ? element("span", { class: m.choosable ? "note" : "note error", text: m.why_not }) : null,
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
  $("#job-panel").hidden = !last;
  if (last) watch(last.id);
}

function jobWords(j) {
  const o = j.options;
  if (j.kind === "train") {
    return ` (${o.model || "recipe"}, ${o.image_size || "recipe"} px, for ${o.target || "laptop"})` +
      (j.metrics.val ? `: val accuracy ${pct(j.metrics.val.accuracy)}` : "");
  }
  return o.target ? ` (for ${o.target})` : ` (${o.format}${o.int8 ? ", int8" : ""})`;
}

function showJobList() {
  const jobs = state.project.job_list.map(latest).reverse();
  $("#job-list").replaceChildren(...jobs.map((j) => element("li", { "data-job": String(j.id) },
    `#${j.id} ${j.kind === "train" ? "training" : "export"} `, element("strong", { class: "job-state", text: j.state }),
    jobWords(j), j.error ? element("span", { class: "error", text: " " + j.error }) : null)));
  if (!jobs.length) $("#job-list").append(element("li", { class: "empty", text: "No training yet: choose the hardware " +
    "and an architecture above, then Start training." }));
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
  $("#job-panel").hidden = false;
  follow("job", jobId, showJob);
}

function showJob(job) {
  const p = job.progress || {};
  const project = state.project;
  if (project && project.job_list.some((j) => j.id === job.id)) showJobList();
  $("#job-id").textContent = `#${job.id}`;
  $("#job-state").textContent = job.state;
  $("#job-panel").dataset.state = job.state;
  const fraction = job.state === "done" ? 1 : p.total ? p.done / p.total : 0;
  $("#job-bar").style.width = `${Math.round(100 * fraction)}%`;
  const running = job.state === "running";
  const parts = running ? [plainStage(p.stage), p.total ? `${p.done} of ${p.total} photos` : "",
                           p.rate ? `${p.rate.toFixed(0)} photos/s` : "",
                           p.job_eta_s != null ? `about ${seconds(p.job_eta_s)} left` : "",
                           p.resumed ? "(resumed after a restart)" : ""]
                        : [job.state === "queued" ? "waiting for the job before it" : ""];
  $("#job-stage").textContent = parts.filter(Boolean).join(" · ");
  $("#job-error").textContent = job.error || "";
  $("#job-cancel").hidden = !["queued", "running"].includes(job.state);
  $("#job-cancel").onclick = () => guarded(() => api("POST", `/jobs/${job.id}/cancel`));
  const history = p.history || [];
  const kept = job.metrics.best_epoch;
  $("#history tbody").replaceChildren(...history.map((r) => element("tr", { class: r.epoch === kept ? "kept" : "" },
    ...[r.epoch + (r.epoch === kept ? " (kept)" : ""), STAGES[r.stage] || r.stage, r.train_loss.toFixed(3),
        pct(r.train_accuracy), r.val_loss != null ? r.val_loss.toFixed(3) : "-", pct(r.val_accuracy),
        pct(r.val_macro_f1), Math.round(r.images_per_s), r.seconds.toFixed(1)]
      .map((v) => element("td", { text: String(v) })))));
  drawCurves($("#curves"), history, p.epochs);
  const result = $("#job-result");
  result.replaceChildren();
  if (running && history.length) {  // the best model so far is in the run folder already, calibrated: Try uses it
    const metric = `val_${job.options.metric || "macro_f1"}`;
    const best = history.reduce((a, r) => (r[metric] > a[metric] ? r : a));
    result.append(`First model ready: val accuracy ${pct(best.val_accuracy)} (${best.epoch ? `epoch ${best.epoch}` :
      "the new head"}), still improving. `, element("a", { href: `#/p/${job.project}/try`, text: "Try it now" }));
  }
  if (job.state === "done" && job.metrics.val) {
    const m = job.metrics;
    result.append(`Done: val accuracy ${pct(m.val.accuracy)} on ${m.val.count} photos (macro-F1 ${pct(m.val.macro_f1)}). ` +
      `${m.ending[0].toUpperCase()}${m.ending.slice(1)}. `, element("a", { href: `#/p/${job.project}/evaluate`, text: "Open the report" }));
  }
  if (FINISHED.includes(job.state) && state.project && !followers.job) {
    loadProject(state.project.id).then(() => { if (state.project) showJobList(); });
  }
}

// Loss and accuracy per epoch (epoch 0: the new head), drawn as they arrive, as Teachable Machine shows them.
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawCurves(box, history, epochs) {
  box.replaceChildren();
  if (!history.length) return;
  const last = Math.max(epochs || 0, ...history.map((r) => r.epoch), 1);
  const losses = history.flatMap((r) => [r.train_loss, r.val_loss]).filter((v) => v != null);
  box.append(chart("loss", history, last, Math.max(...losses, 0.1) * 1.1, [["train_loss", "train", "train"], ["val_loss", "validation", "val"]], (v) => v.toFixed(2)),
             chart("accuracy", history, last, 1, [["train_accuracy", "train", "train"], ["val_accuracy", "validation", "val"]], (v) => `${Math.round(100 * v)} %`));
}

function chart(title, history, last, top, series, label) {
  const w = 300, h = 170, left = 40, right = 10, up = 22, down = 28;
  const x = (epoch) => left + (w - left - right) * epoch / last;
  const y = (v) => up + (h - up - down) * (1 - v / top);
  const node = svg("svg", { viewBox: `0 0 ${w} ${h}`, class: "chart", role: "img", "aria-label": `${title} per epoch`, "data-chart": title });
  node.append(svg("text", { x: left, y: 14, class: "chart-title" }, title));
  for (const v of [0, top / 2, top]) {
    node.append(svg("line", { x1: left, x2: w - right, y1: y(v), y2: y(v), class: "grid" }),
                svg("text", { x: left - 4, y: y(v) + 4, class: "tick", "text-anchor": "end" }, label(v)));
  }
  node.append(svg("text", { x: x(0), y: h - 10, class: "tick" }, "epoch 0"),
              svg("text", { x: x(last), y: h - 10, class: "tick", "text-anchor": "end" }, `epoch ${last}`));
  for (const [key, name, css] of series) {
    const points = history.filter((r) => r[key] != null).map((r) => `${x(r.epoch)},${y(r[key])}`);
    node.append(svg("polyline", { points: points.join(" "), class: `line ${css}` }));
    for (const point of points) { const [cx, cy] = point.split(","); node.append(svg("circle", { cx, cy, r: 2.5, class: `dot ${css}` })); }
    node.append(svg("text", { x: css === "train" ? w - right - 70 : w - right, y: 14, class: `legend ${css}`, "text-anchor": "end" }, name));
  }
  return node;
}
