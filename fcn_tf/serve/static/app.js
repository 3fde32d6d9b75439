// The serving page: send an image to the TensorFlow Serving REST API of this
// server (signature serving_bytes_png), draw the class map over it, list the
// classes with their share of pixels and the latency. No external scripts.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;       // GET /info: model name, class names and colours, limits
let shown = null;      // {input: Image, mask: Image} of the last answer

function setState(state) { document.body.dataset.state = state; }

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("status").textContent = "";
  setState("error");
}

function clearError() { $("error").hidden = true; $("error").textContent = ""; }

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the browser could not show this image"));
    image.src = src;
  });
}

function drawOverlay() {
  if (!shown) return;
  const canvas = $("overlay");
  canvas.width = shown.input.naturalWidth;
  canvas.height = shown.input.naturalHeight;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.globalAlpha = 1;
  context.drawImage(shown.input, 0, 0);
  context.globalAlpha = Number($("opacity").value) / 100;
  context.drawImage(shown.mask, 0, 0);
  canvas.dataset.ready = "1";
}

function fillLegend(counts) {
  const total = counts.reduce((a, b) => a + b, 0) || 1;
  const body = $("legend").querySelector("tbody");
  body.textContent = "";
  info.class_names.forEach((name, c) => {
    const row = document.createElement("tr");
    row.className = "legend-row";
    row.dataset.classId = String(c);
    const [r, g, b] = info.colors[c];
    const swatch = document.createElement("td");
    swatch.innerHTML = `<span class="swatch" style="background: rgb(${r}, ${g}, ${b})"></span>`;
    const label = document.createElement("td");
    label.className = "name";
    label.textContent = name;
    const share = document.createElement("td");
    share.className = "share";
    share.textContent = `${(100 * counts[c] / total).toFixed(1)}%`;
    row.append(swatch, label, share);
    body.append(row);
  });
}

async function segment(blob) {
  clearError();
  $("overlay").dataset.ready = "0";
  setState("busy");
  $("status").textContent = "Segmenting…";
  let answer, response;
  const started = performance.now();
  try {
    const body = JSON.stringify({signature_name: "serving_bytes_png",
                                 instances: [{b64: toBase64(await blob.arrayBuffer())}]});
    response = await fetch(info.predict_url, {method: "POST", body,
                                              headers: {"Content-Type": "application/json"}});
    answer = await response.json().catch(() => ({error: `HTTP ${response.status} without a JSON answer`}));
  } catch (error) {
    showError(`The request failed: ${error.message}`);
    return;
  }
  const roundTrip = performance.now() - started;
  if (!response.ok) {
    showError(`The server refused the image (HTTP ${response.status}): ${answer.error}`);
    return;
  }
  const prediction = answer.predictions[0];
  try {
    const input = await loadImage(URL.createObjectURL(blob));
    const mask = await loadImage("data:image/png;base64," + prediction.class_ids_png_bytes.b64);
    shown = {input, mask};
    $("input").src = input.src;
  } catch (error) {
    showError(error.message);
    return;
  }
  $("result").hidden = false;
  drawOverlay();
  fillLegend(prediction.class_pixel_counts);
  const timing = /dur=([0-9.]+)/.exec(response.headers.get("Server-Timing") || "");
  $("latency").textContent = `Server ${timing ? Number(timing[1]).toFixed(1) : "?"} ms, ` +
    `round trip ${roundTrip.toFixed(1)} ms (${shown.input.naturalWidth}×${shown.input.naturalHeight} pixels)`;
  $("status").textContent = "";
  setState("done");
}

async function start() {
  try {
    const response = await fetch("/info");
    info = await response.json();
  } catch (error) {
    showError(`Could not reach the server: ${error.message}`);
    return;
  }
  $("model").textContent = `Model ${info.model} version ${info.version}` +
    (info.architecture ? ` (${info.architecture}${info.backbone ? " / " + info.backbone : ""})` : "") +
    `, ${info.class_names.length} classes`;
  $("api").textContent = `POST ${info.predict_url}`;
  $("file").addEventListener("change", () => {
    if ($("file").files.length) segment($("file").files[0]);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) segment(event.dataTransfer.files[0]);
  });
  document.querySelectorAll(".sample").forEach((button) => {
    button.addEventListener("click", async () => {
      const response = await fetch(button.dataset.src);
      segment(await response.blob());
    });
  });
  $("opacity").addEventListener("input", drawOverlay);
  setState("idle");
}

start();
