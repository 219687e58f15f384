// The demo page: sends each chosen or dropped image to /v1/predict and draws its top-5 bars.
"use strict";

const input = document.getElementById("file-input");
const dropZone = document.getElementById("drop-zone");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
const template = document.getElementById("result-template");

fetch("/v1/model").then((r) => r.json()).then((model) => {
  document.getElementById("model-info").textContent =
    `${model.architecture}, ${model.num_classes} classes, ${model.preprocessing.size} px, on ${model.engine}`;
});

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
  statusLine.textContent = `classifying ${images.length} image${images.length === 1 ? "" : "s"}…`;
  await Promise.all(images.map(classify));
  statusLine.textContent = `done: ${images.length} image${images.length === 1 ? "" : "s"}`;
}

async function classify(file) {
  const card = template.content.firstElementChild.cloneNode(true);
  card.querySelector(".thumbnail").src = URL.createObjectURL(file);
  card.querySelector(".thumbnail").alt = file.name;
  card.querySelector(".file-name").textContent = file.name;
  card.querySelector(".top-label").textContent = "…";
  results.prepend(card);
  const form = new FormData();
  form.append("files", file, file.name);
  const start = performance.now();
  try {
    const response = await fetch("/v1/predict", { method: "POST", body: form });
    const body = await response.json();
    const roundTrip = performance.now() - start;
    const result = body.results ? body.results[0] : { error: body.error };
    if (result.error) {
      fail(card, result.error);
      return;
    }
    card.querySelector(".top-label").textContent = result.label;
    const bars = card.querySelector(".bars");
    for (const entry of result.top_k) {
      const row = document.createElement("li");
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = entry.label;
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = `${(entry.confidence * 100).toFixed(1)}%`;
      const track = document.createElement("div");
      track.append(bar);
      const percent = document.createElement("span");
      percent.className = "percent";
      percent.textContent = `${(entry.confidence * 100).toFixed(1)}%`;
      row.append(label, track, percent);
      bars.append(row);
    }
    card.querySelector(".latency").textContent =
      `server ${body.latency_ms.toFixed(1)} ms, round trip ${roundTrip.toFixed(1)} ms`;
    card.dataset.state = "done";
  } catch (error) {
    fail(card, `request failed: ${error}`);
  }
}

function fail(card, message) {
  card.classList.add("failed");
  card.querySelector(".top-label").textContent = message;
  card.dataset.state = "failed";
}
