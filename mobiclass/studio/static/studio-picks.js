// The studio page, "label these next": photos uploaded without a class, and the ones worth labelling first (a
// select job: those the latest model is least sure of, spread over the pool; before any training, the most typical
// ones). One click files a photo under a class; it then leaves the list and joins training.
"use strict";

async function showPicks() {
  const p = state.project;
  $("#pick-start").disabled = !p.unlabelled;
  const last = p.job_list.filter((j) => j.kind === "select").at(-1);
  if (last) return follow("pick", last.id, renderPicks);
  $("#pick-state").textContent = p.unlabelled ? `${p.unlabelled} photo(s) without a class.` : "No photos without a class.";
  $("#pick-list").replaceChildren();
}

$("#unlabelled-input").addEventListener("change", (event) => guarded(async () => {
  const files = [...event.target.files];
  event.target.value = "";
  let added = 0, duplicates = 0, errors = [];
  for (let i = 0; i < files.length; i += 100) {  // the server takes at most 200 photos per request
    const form = new FormData();
    for (const file of files.slice(i, i + 100)) form.append("files", file, file.name);
    $("#pick-state").textContent = `Uploading ${Math.min(i + 100, files.length)} of ${files.length}...`;
    const result = await api("POST", `/projects/${state.project.id}/images:unlabelled`, form);
    added += result.added; duplicates += result.duplicates.length; errors = errors.concat(result.errors);
  }
  await loadProject(state.project.id);
  $("#pick-start").disabled = !state.project.unlabelled;
  $("#pick-state").textContent = `Added ${added} photo(s) without a class (${state.project.unlabelled} in all)` +
    (duplicates ? `; ${duplicates} already in the project` : "") +
    (errors.length ? `; ${errors.length} not usable: ` + errors.map((e) => `${e.file} (${e.error})`).join(", ") : "") +
    ". Pick the ones to label next.";
  $("#pick-list").replaceChildren();
}));

$("#pick-start").addEventListener("click", () => guarded(async () => {
  const started = await api("POST", `/projects/${state.project.id}/select`, { count: 12 });
  await loadProject(state.project.id);
  follow("pick", started.job, renderPicks);
}));

async function renderPicks(job) {
  const list = $("#pick-list");
  if (job.state !== "done") {
    $("#to-label").dataset.state = job.state;
    $("#pick-state").textContent = job.state === "failed" ? `Picking failed: ${job.error}` :
      job.state === "cancelled" ? "Picking was cancelled." : `Picking the photos to label next: ${plainStage(job.progress.stage)}...`;
    list.replaceChildren();
    return;
  }
  const data = await guarded(() => api("GET", `/projects/${state.project.id}/images?unlabelled=true&limit=5000`));
  if (!data) return;
  const waiting = new Map(data.images.map((i) => [i.id, i]));
  const picks = job.metrics.picks.filter((pick) => waiting.has(pick.image));
  const how = job.metrics.model ? `the ones the model of training job #${job.metrics.model} is least sure of` :
    "the most typical ones (no model yet: train once to pick by the model's doubts)";
  const say = () => {
    const left = list.querySelectorAll("li").length;
    $("#pick-start").disabled = !waiting.size;
    $("#pick-state").textContent = left ? `Label these next (${left} of ${waiting.size} without a class): ${how}.` :
      `${waiting.size} photo(s) without a class left.` + (waiting.size ? " Pick again, or retrain first to pick by the new model." : "");
  };
  const classes = state.project.classes.map((c) => c.name);
  list.replaceChildren(...picks.map((pick) => {
    const image = waiting.get(pick.image);
    const order = pick.guess ? [pick.guess, ...classes.filter((c) => c !== pick.guess)] : classes;
    const item = element("li", { "data-pick": String(pick.image) },
      element("img", { src: withToken(image.thumbnail), alt: image.source || "a photo without a class" }),
      element("p", { class: "caption", text: pick.guess ? `looks like ${pick.guess} (${Math.round(100 * pick.confidence)} %)` :
                                                         image.source || "" }),
      element("div", { class: "row wrap" }, ...order.map((name) => element("button", {
        type: "button", class: name === pick.guess ? "small" : "small secondary", text: name, onclick: () => guarded(async () => {
          await api("PATCH", `/images/${pick.image}`, { class: name });
          waiting.delete(pick.image);
          item.remove();
          say();
          await refreshCounts();
          notice(`Filed the photo under ${name}. Retrain to use it.`);
        }) }))),
      classes.length ? null : element("p", { class: "warning", text: "Add a class first, then file the photo under it." }));
    return item;
  }));
  say();
  $("#to-label").dataset.state = "done";  // once the picks are shown: what waits for "done" finds them
}
