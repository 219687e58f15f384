// The studio page, Review: the data doctor's findings as a queue, one click each: relabel a suspected label error
// (or keep it as it is), delete the training copy of a duplicate, keep or delete an odd photo. What was handled
// leaves the queue, here and in the next check (a relabelled or kept photo is marked reviewed on the server).
"use strict";

async function showReview() {
  const last = state.project.job_list.filter((j) => j.kind === "doctor").at(-1);
  $("#review-start").disabled = !state.project.check.ready;
  if (!last) {
    $("#review-state").textContent = state.project.check.ready ? "Not checked yet." :
      "The photos can be checked once training could start (see the dataset check).";
    $("#review-body").replaceChildren();
    return;
  }
  follow("review", last.id, renderReview);
}

$("#review-start").addEventListener("click", () => guarded(async () => {
  const started = await api("POST", `/projects/${state.project.id}/doctor`);
  await loadProject(state.project.id);
  follow("review", started.job, renderReview);
}));

async function renderReview(job) {
  const body = $("#review-body");
  if (job.state !== "done") {
    $("#review").dataset.state = job.state;
    $("#review-state").textContent = job.state === "failed" ? `The check failed: ${job.error}` :
      job.state === "cancelled" ? "The check was cancelled." : `Checking the photos: ${plainStage(job.progress.stage)}...`;
    body.replaceChildren();
    return;
  }
  const data = await guarded(() => api("GET", `/projects/${state.project.id}/images?limit=5000`));
  if (!data) return;
  const images = new Map(data.images.map((i) => [i.id, i]));
  const open = (id) => images.has(id) && !images.get(id).reviewed;
  const m = job.metrics;
  const labels = m.label_issues.filter((s) => open(s.image));
  const groups = m.duplicates.filter((g) => g.images.filter((id) => images.has(id)).length > 1 &&
                                            g.images.some((id) => open(id)));
  const others = m.others.filter((o) => open(o.image));
  const leaks = groups.filter((g) => g.leak).length;
  $("#review-state").textContent = `Checked ${m.photos} photos (job #${job.id}): ${labels.length} suspected wrong ` +
    `class(es), ${groups.length} duplicate group(s)${leaks ? `, ${leaks} across training and validation` : ""}, ` +
    `${others.length} odd photo(s) to look at.` + (labels.length + groups.length + others.length ? "" : " Nothing left to review.");
  // The counts first: reading the project clears the notice, which then says what was done.
  const handled = async (node, text) => { node.remove(); await refreshCounts(); notice(text); };
  body.replaceChildren(...[
    labels.length ? element("h3", { text: "Filed under the wrong class?" }) : null,
    element("ul", { class: "thumbs review-list" }, ...labels.map((s) => {
      const image = images.get(s.image);
      const item = element("li", { "data-review": "label", "data-image": String(s.image) },
        element("img", { src: withToken(image.thumbnail), alt: image.source || image.class }),
        element("p", { class: "caption", text: `filed under ${s.given} (${s.split}), looks like ${s.suggested} ` +
                                                `(${Math.round(100 * s.score)} % sure it is not ${s.given})` }),
        element("button", { type: "button", class: "small", text: `Relabel as ${s.suggested}`, onclick: () => guarded(async () => {
          await api("PATCH", `/images/${s.image}`, { class: s.suggested });
          await handled(item, `Moved the photo from ${s.given} to ${s.suggested}. Retrain to use the change.`);
        }) }),
        element("button", { type: "button", class: "small secondary", text: `Keep as ${s.given}`, onclick: () => guarded(async () => {
          await api("PATCH", `/images/${s.image}`, { reviewed: true });
          await handled(item, `Kept the photo as ${s.given}: it will not be suspected again.`);
        }) }));
      return item;
    })),
    groups.length ? element("h3", { text: "Duplicates" }) : null,
    element("ul", { class: "review-groups" }, ...groups.map((g, n) => {
      const item = element("li", { "data-review": g.leak ? "leak" : "duplicate", "data-group": String(n) },
        element("p", { class: g.leak ? "error" : "", text: g.leak ? "The same photo in training and validation: a leak " +
          "(the validation figures are optimistic). Delete the training copy." : `The same photo ${g.images.length} times (${g.kind}).` }),
        element("div", { class: "row wrap" }, ...g.images.filter((id) => images.has(id)).map((id, n) => {
          const image = images.get(id);
          const figure = element("figure", { "data-image": String(id) },
            element("img", { src: withToken(image.thumbnail), alt: image.source || image.class }),
            element("figcaption", { text: `${image.class}, ${g.splits[g.images.indexOf(id)]}` }));
          if (g.delete.includes(id)) {
            figure.append(element("button", { type: "button", class: "small danger", text: "Delete this copy", onclick: () => guarded(async () => {
              await api("DELETE", `/images/${id}`);
              images.delete(id);
              figure.remove();
              if (item.querySelectorAll("figure").length < 2) item.remove();
              await refreshCounts();
              notice("Deleted the training copy. Retrain to use the change.");
            }) }));
          }
          return figure;
        })),
        element("button", { type: "button", class: "small secondary", text: "Keep them all", onclick: () => guarded(async () => {
          for (const id of g.images.filter((i) => images.has(i))) await api("PATCH", `/images/${id}`, { reviewed: true });
          await handled(item, "Kept the photos: they will not be suspected again.");
        }) }));
      return item;
    })),
    others.length ? element("h3", { text: "Odd photos" }) : null,
    element("ul", { class: "thumbs review-list" }, ...others.map((o) => {
      const image = images.get(o.image);
      const item = element("li", { "data-review": "other", "data-image": String(o.image) },
        element("img", { src: withToken(image.thumbnail), alt: image.source || image.class }),
        element("p", { class: "caption", text: `${image.class}: ${o.what}` }),
        element("button", { type: "button", class: "small secondary", text: "Keep", onclick: () => guarded(async () => {
          await api("PATCH", `/images/${o.image}`, { reviewed: true });
          await handled(item, "Kept the photo.");
        }) }),
        element("button", { type: "button", class: "small danger", text: "Delete", onclick: () => guarded(async () => {
          if (!confirm(`Delete this photo of ${image.class}?`)) return;
          await api("DELETE", `/images/${o.image}`);
          images.delete(o.image);
          await handled(item, `Deleted the photo of ${image.class}. Retrain to use the change.`);
        }) }));
      return item;
    }))].filter(Boolean));
  $("#review").dataset.state = "done";  // once the findings are shown: what waits for "done" finds them
}

// After a change in the queue: the class list and the dataset check follow, the queue stays as it is.
async function refreshCounts() {
  await loadProject(state.project.id);
  if (!$("#view-collect").hidden) {
    const p = state.project;
    for (const c of p.classes) {
      const button = document.querySelector(`#class-list li[data-class="${CSS.escape(c.name)}"] button.link`);
      if (button) button.textContent = `${c.name} (${c.images})`;
    }
    await showImages();
  }
}
