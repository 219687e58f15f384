// The demo page: sends each chosen or dropped image to /v1/predict and draws its top-5 bars, in upload order.
"use strict";

const UNSURE_BELOW = 0.5;  // a top class under this confidence is shown as a guess, not an answer
const input = document.getElementById("file-input");
const dropZone = document.getElementById("drop-zone");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
const template = document.getElementById("result-template");
const explainBox = document.getElementById("explain");
const photos = new Map();  // card -> its file, to ask for the heatmap when the toggle is turned on

// A server listening beyond 127.0.0.1 prints its address with #token=...; the token is kept for the tab.
if (location.hash.startsWith("#token=")) {
  sessionStorage.setItem("token", decodeURIComponent(location.hash.slice(7)));
  history.replaceState(null, "", location.pathname);
}
const token = sessionStorage.getItem("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const post = (path, body) => fetch(path, { method: "POST", body, headers });

fetch("/v1/model", { headers }).then((r) => r.json()).then((model) => {
  document.getElementById("model-title").textContent = model.title || model.architecture;
  document.getElementById("model-info").textContent =
    `${model.architecture}, ${model.preprocessing.size} px, on ${model.engine}`;
  const names = model.classes.slice(0, 20).join(", ");
  document.getElementById("model-classes").textContent =
    `${model.num_classes} classes: ${names}${model.num_classes > 20 ? ", …" : ""}`;
  document.getElementById("explain-toggle").hidden = !model.explain;
});

// The heatmap replaces the photo while the toggle is on; each card asks for its heatmap once.
explainBox.addEventListener("change", () => {
  for (const card of results.querySelectorAll(".result[data-state=done]")) showHeatmap(card);
});

async function showHeatmap(card) {
  const thumbnail = card.querySelector(".thumbnail");
  if (!explainBox.checked) {
    thumbnail.src = card.dataset.photo;
    card.classList.remove("explained");
    return;
  }
  if (!card.dataset.heatmap) {
    const form = new FormData();
    const file = photos.get(card);
    form.append("files", file, file.name);
    const response = await post("/v1/explain", form);
    const body = await response.json();
    const result = body.results ? body.results[0] : { error: body.error };
    if (result.error) {
      card.querySelector(".note").textContent = `no heatmap: ${result.error}`;
      return;
    }
    card.dataset.heatmap = result.heatmap;
  }
  if (explainBox.checked) {
    thumbnail.src = card.dataset.heatmap;
    card.classList.add("explained");
  }
}

input.addEventListener("change", () => classifyAll(input.files));
dropZone.addEventListener("dragover", (event) => { event.preventDefault(); dropZone.classList.add("dragging"); });
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  classifyAll(event.dataTransfer.files);
});

async function classifyAll(files) {
  const images = Array.from(files);
  const batch = document.createElement("div");  // the newest upload goes on top, its images in upload order
  batch.className = "batch";
  results.prepend(batch);
  const cards = images.map((file) => newCard(file, batch));
  statusLine.textContent = `classifying ${images.length} image${images.length === 1 ? "" : "s"}…`;
  await Promise.all(images.map((file, i) => classify(file, cards[i])));
  statusLine.textContent = `done: ${images.length} image${images.length === 1 ? "" : "s"}`;
}

function newCard(file, batch) {
  const card = template.content.firstElementChild.cloneNode(true);
  const thumbnail = card.querySelector(".thumbnail");
  thumbnail.addEventListener("error", () => card.classList.add("no-image"));  // never a broken-image icon
  thumbnail.src = card.dataset.photo = URL.createObjectURL(file);
  photos.set(card, file);
  thumbnail.alt = file.name;
  card.querySelector(".file-name").textContent = file.name;
  card.querySelector(".top-label").textContent = "…";
  batch.append(card);
  return card;
}

async function classify(file, card) {
  const form = new FormData();
  form.append("files", file, file.name);
  const start = performance.now();
  try {
    const response = await post("/v1/predict", form);
    const body = await response.json();
    const roundTrip = performance.now() - start;
    const result = body.results ? body.results[0] : { error: body.error };
    if (result.error) {
      fail(card, result.error);
      return;
    }
    const unsure = result.confidence < UNSURE_BELOW;
    card.classList.toggle("unsure", unsure);
    card.querySelector(".top-label").textContent = result.label;
    card.querySelector(".note").textContent = unsure
      ? `low confidence (${(result.confidence * 100).toFixed(0)}%): a guess, not an answer` : "";
    drawBars(card.querySelector(".bars"), result.top_k);
    card.querySelector(".latency").textContent =
      `server ${body.latency_ms.toFixed(1)} ms, round trip ${roundTrip.toFixed(1)} ms`;
    card.dataset.state = "done";
    if (explainBox.checked) await showHeatmap(card);
  } catch (error) {
    fail(card, `request failed: ${error}`);
  }
}

function drawBars(list, topK) {
  for (const entry of topK) {
    const row = document.createElement("li");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = entry.label;
    label.title = entry.label;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(entry.confidence * 100).toFixed(1)}%`;
    const track = document.createElement("div");
    track.className = "track";
    track.append(bar);
    const percent = document.createElement("span");
    percent.className = "percent";
    percent.textContent = `${(entry.confidence * 100).toFixed(1)}%`;
    row.append(label, track, percent);
    list.append(row);
  }
}

function fail(card, message) {
  card.classList.add("failed", "no-image");
  card.querySelector(".top-label").textContent = message;
  card.dataset.state = "failed";
}
