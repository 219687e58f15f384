// The phone's capture page (opened from the Collect tab's QR code): photos from the phone's camera into a class of
// one project. The link carries the project and the token in its fragment, which never reaches a server log.
"use strict";

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.hash.slice(1));
if (params.has("token")) {
  sessionStorage.setItem("capture", JSON.stringify({ project: params.get("project"), token: params.get("token") }));
  history.replaceState(null, "", location.pathname);
}
const link = JSON.parse(sessionStorage.getItem("capture") || "{}");
let chosen = null;

async function api(method, path, body) {
  const response = await fetch("/api" + path, { method, body,
    headers: { "X-Mobiclass": "1", Authorization: "Bearer " + (link.token || "") } });
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function notice(text) {
  $("#notice").textContent = text;
  $("#notice").className = "error";
  $("#notice").hidden = !text;
}

async function showClasses() {
  const project = await api("GET", `/projects/${Number(link.project)}`);
  $("#project-title").textContent = project.name;
  if (!project.classes.length) notice("This project has no class yet: add one in the studio on the computer.");
  if (!project.classes.some((c) => c.name === chosen)) chosen = project.classes[0]?.name || null;
  $("#classes").replaceChildren(...project.classes.map((c) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = c.name === chosen ? "choice chosen" : "choice secondary";
    button.setAttribute("role", "radio");
    button.setAttribute("aria-checked", String(c.name === chosen));
    button.dataset.class = c.name;
    button.textContent = `${c.name} (${c.images})`;
    button.addEventListener("click", () => { chosen = c.name; showClasses().catch((e) => notice(e.message)); });
    return button;
  }));
  $("#take").hidden = !chosen;
}

async function send(files) {
  if (!files.length || !chosen) return;
  const form = new FormData();
  form.append("label", chosen);
  for (const file of files) form.append("files", file, file.name);
  $("#status").textContent = `Sending ${files.length} photo(s)...`;
  try {
    const summary = await api("POST", `/projects/${Number(link.project)}/images`, form);
    $("#status").textContent = `Added ${summary.added} photo(s) to ${chosen}` +
      (summary.duplicates.length ? `; ${summary.duplicates.length} already in the project` : "") +
      (summary.errors.length ? `; ${summary.errors.length} not usable` : "") + ".";
    await showClasses();
  } catch (error) { $("#status").textContent = ""; notice(error.message); }
}

for (const id of ["#shoot", "#pick"]) {
  $(id).addEventListener("change", (event) => { send([...event.target.files]); event.target.value = ""; });
}
if (!link.project) notice("Open this page from the QR code in the studio's Collect tab.");
else showClasses().catch((error) => notice(error.message));
