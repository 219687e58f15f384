// The studio page: every action is a call to the documented /api; state lives on the server, so two tabs agree.
// This file: helpers, routing, live jobs, projects. Then studio-collect.js, studio-train.js, studio-model.js.
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { project: null, tab: null, label: null, cards: [], model: null, live: new Map(), stream: null };
const FINISHED = ["done", "failed", "cancelled"];

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
  let response;
  try { response = await fetch("/api" + path, options); } catch (error) {
    throw Object.assign(new Error("the studio does not answer: is it still running?"), { code: "offline" });
  }
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

const pct = (x) => x == null ? "-" : (100 * x).toFixed(1) + " %";
const seconds = (s) => s == null ? "" : s < 90 ? `${Math.round(s)} s` : `${(s / 60).toFixed(1)} min`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// The words a person reads for the trainer's stage names.
const STAGES = { head: "new head", finetune: "fine-tuning" };
function plainStage(text) {
  return (text || "").replace(/^head stage: features/, "reading the photos for the new head")
    .replace(/^epoch (\d+)\/(\d+)/, "fine-tuning: epoch $1 of $2");
}

// --- live jobs ------------------------------------------------------------------------------------------------
// A live view follows a job's record: Server-Sent Events while the studio answers. When the stream breaks (the
// studio restarted, the network dropped) the view says "reconnecting", tries again after 1, 2, 4, 4... s, and on
// reconnecting reads the record over REST first, so a job that ended meanwhile shows its end at once.
const followers = {};

function follow(slot, jobId, render) {
  unfollow(slot);
  const f = followers[slot] = { jobId, tries: 0, source: null, timer: null, stopped: false };
  const show = (job) => { state.live.set(job.id, job); if (FINISHED.includes(job.state)) unfollow(slot); render(job); };
  const retry = () => {
    f.tries += 1;
    connection(slot, `Connection to the studio lost: reconnecting (try ${f.tries})...`);
    f.timer = setTimeout(connect, Math.min(1000 * 2 ** (f.tries - 1), 4000));
  };
  async function connect() {
    if (f.stopped) return;
    let job;
    try { job = await api("GET", `/jobs/${jobId}`); } catch (error) {
      if (error.code === "not_found") { unfollow(slot); return; }
      retry(); return;
    }
    if (f.stopped) return;
    f.tries = 0;
    connection(slot, "");
    show(job);
    if (f.stopped) return;
    const source = f.source = new EventSource(withToken(`/api/jobs/${jobId}/events`));
    source.addEventListener("job", (event) => show(JSON.parse(event.data)));
    source.onerror = () => { source.close(); if (!f.stopped) retry(); };
  }
  connect();
}

function unfollow(slot) {
  const f = followers[slot];
  if (!f) return;
  f.stopped = true;
  if (f.source) f.source.close();
  clearTimeout(f.timer);
  delete followers[slot];
  connection(slot, "");
  const job = state.live.get(f.jobId);
  if (job && !FINISHED.includes(job.state)) state.live.delete(f.jobId);  // no longer followed: the record decides
}

function connection(slot, text) {
  const box = $(`#${slot}-connection`);
  if (box) { box.textContent = text; box.hidden = !text; }
}

// The newest record of a job: the live one while it is followed, else the project's.
const latest = (job) => state.live.get(job.id) || job;

// --- routing: #/ (projects) and #/p/ID/TAB -------------------------------------------------------------------
async function route() {
  const match = location.hash.match(/^#\/p\/(\d+)(?:\/(\w+))?/);
  const tab = match ? `${match[1]}/${match[2] || "collect"}` : "projects";
  if (tab !== state.tab) { stopCamera(); for (const slot of Object.keys(followers)) unfollow(slot); }
  state.tab = tab;
  for (const view of document.querySelectorAll("main > section")) view.hidden = true;
  if (!match) { state.project = null; $("#tabs").hidden = true; $("#project-title").textContent = ""; return showProjects(); }
  const name = match[2] || "collect";
  await loadProject(Number(match[1]));
  if (!state.project) return;
  $("#tabs").hidden = false;
  for (const link of document.querySelectorAll("#tabs a")) {
    link.href = `#/p/${state.project.id}/${link.dataset.tab}`;
    link.classList.toggle("active", link.dataset.tab === name);
  }
  $(`#view-${name}`).hidden = false;
  await ({ collect: showCollect, train: showTrain, evaluate: showEvaluate, deploy: showDeploy, try: showTry }[name])();
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
  if (data && !data.projects.length) {
    list.append(element("li", { class: "empty", text: "No projects yet. Give your first one a name above (for " +
      "example \"flowers\"): you then add a class per kind of thing to recognise, and its photos." }));
  }
  for (const p of data?.projects || []) {
    const trained = p.jobs.done ? "trained" : "not trained yet";
    list.append(element("li", { class: "card", "data-project": p.name },
      element("a", { href: `#/p/${p.id}/collect`, class: "title", text: p.name }),
      element("p", { text: `${p.classes.length} classes, ${p.images} photos, ${trained}` }),
      element("div", { class: "row" },
        element("button", { type: "button", class: "secondary", text: "Rename", onclick: () => guarded(async () => {
          const name = prompt("New name", p.name);
          if (name) { await api("PATCH", `/projects/${p.id}`, { name }); showProjects(); }
        }) }),
        element("button", { type: "button", class: "danger", text: "Delete", onclick: () => guarded(async () => {
          if (confirm(`Delete ${p.name} with its ${p.images} photos, models and exports?`)) {
            await api("DELETE", `/projects/${p.id}`); showProjects();
          }
        }) }))));
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
