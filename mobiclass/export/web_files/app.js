// The page: photos dropped or chosen, or live camera frames, classified on this device; nothing leaves it.
import {classify, load} from "./mobiclass.js";

const $ = (selector) => document.querySelector(selector);
let stream = null;

/** For automation: a Promise of [{label, confidence}, ...] for a URL or an <img>, best first. */
window.mobiclassClassify = (source, topK = 5) => classify(source, topK);

function show(ranked) {
  $("#results").replaceChildren(...ranked.map(({label, confidence}) => {
    const item = document.createElement("li");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(100 * confidence).toFixed(1)}%`;
    item.append(`${label} ${(100 * confidence).toFixed(1)}%`, bar);
    return item;
  }));
}

function failed(error) {
  $("#status").textContent = `Could not classify: ${error.message || error}`;
  $("#status").className = "error";
}

async function classifyFiles(files) {
  for (const file of files) {
    $("#preview").src = URL.createObjectURL(file);
    $("#preview").hidden = false;
    try {
      show(await classify(file));
      $("#status").textContent = file.name;
      $("#status").className = "";
    } catch (error) {
      failed(error);
    }
  }
}

async function cameraLoop() {
  while (stream) {
    const started = performance.now();
    try {
      show(await classify($("#camera")));
      $("#status").textContent = `camera: ${(performance.now() - started).toFixed(0)} ms a frame`;
    } catch (error) {
      failed(error);
    }
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
}

$("#file").addEventListener("change", (event) => classifyFiles(event.target.files));
$("#drop").addEventListener("dragover", (event) => { event.preventDefault(); $("#drop").classList.add("over"); });
$("#drop").addEventListener("dragleave", () => $("#drop").classList.remove("over"));
$("#drop").addEventListener("drop", (event) => {
  event.preventDefault();
  $("#drop").classList.remove("over");
  classifyFiles(event.dataTransfer.files);
});
$("#camera-start").addEventListener("click", async () => {
  try {
    stream = await navigator.mediaDevices.getUserMedia({video: {facingMode: "environment"}});
  } catch (error) {
    failed(error);
    return;
  }
  $("#camera").srcObject = stream;
  await $("#camera").play();
  $("#camera").hidden = false;
  $("#preview").hidden = true;
  $("#camera-start").hidden = true;
  $("#camera-stop").hidden = false;
  cameraLoop();
});
$("#camera-stop").addEventListener("click", () => {
  stream.getTracks().forEach((track) => track.stop());
  stream = null;
  $("#camera").hidden = true;
  $("#camera-start").hidden = false;
  $("#camera-stop").hidden = true;
});

load().then(({meta}) => {
  $("#title").textContent = meta.title;
  $("#status").textContent = `Ready: ${meta.classes.length} classes, runs on this device (onnxruntime-web).`;
  document.body.dataset.ready = "true";
}, failed);
