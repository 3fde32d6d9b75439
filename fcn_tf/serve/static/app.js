// The serving page: send an image to the TensorFlow Serving REST API of this
// server (signature serving_bytes_png), draw the class map over it, list the
// classes with their share of pixels and the latency. No external scripts.
//
// The latest image wins: choosing a new one aborts the request in flight and
// drops its answer if it still comes. A new image or an error clears the last
// result, and errors are told in words a person understands (the server's own
// message is kept under "Technical details").
"use strict";

const $ = (id) => document.getElementById(id);
const FORMATS = "JPEG, PNG, GIF, BMP or WebP";
let info = null;       // GET /info: model name, class names and colours, limits
let shown = null;      // {input: Image, mask: Image} of the answer on show
let latest = 0;        // number of the latest request; answers of older ones are dropped
let inFlight = null;   // AbortController of the request in flight

function setState(state) { document.body.dataset.state = state; }

function megabytes(bytes) { return `${(bytes / 1048576).toFixed(1)} MB`; }

function showError(message, technical) {
  $("error-message").textContent = message;
  $("error-technical").textContent = technical || "";
  $("error-details").hidden = !technical;
  $("error").hidden = false;
  $("status").textContent = "";
  setState("error");
}

function clearError() {
  $("error").hidden = true;
  $("error-message").textContent = "";
  $("error-technical").textContent = "";
}

function clearResult() {
  shown = null;
  $("result").hidden = true;
  $("result").dataset.source = "";
  $("source").textContent = "";
  $("input").removeAttribute("src");
  $("overlay").dataset.ready = "0";
  $("overlay").getContext("2d").clearRect(0, 0, $("overlay").width, $("overlay").height);
  $("legend").querySelector("tbody").textContent = "";
  $("latency").textContent = "";
}

// What a person is told for an answer other than 200; the server's message
// goes under "Technical details".
function explain(status, serverMessage) {
  const limits = info.limits;
  const text = (serverMessage || "").toLowerCase();
  if (status === 413 && text.includes("pixels")) {
    return `This picture has too many pixels for the server, which takes up to ` +
      `${(limits.max_pixels / 1e6).toFixed(1)} megapixels. Use a smaller picture.`;
  }
  if (status === 413) {
    return `This file is too large for the server, which takes pictures up to ` +
      `${megabytes(maxFileBytes())}. Use a smaller picture.`;
  }
  if (status === 400 && text.includes("not an image")) {
    return `This file is not a picture the server can read. Choose a ${FORMATS} picture.`;
  }
  if (status === 400 && /decode|truncated|corrupt|cut short|broken/.test(text)) {
    return "This picture seems damaged or incomplete: the server could not read it. " +
      "Try another file.";
  }
  if (status === 400) {
    return "The server could not work on this picture. Try another one.";
  }
  if (status === 503) {
    return "The server is busy or still starting. Try again in a moment.";
  }
  if (status === 504) {
    return "The server took too long to answer. Try a smaller picture, or try again later.";
  }
  return "Something went wrong on the server. Try again; if it keeps happening, tell " +
    "whoever runs it.";
}

// The largest file the server takes: its body limit, less base64's 4/3 and the JSON around.
function maxFileBytes() {
  return Math.floor((info.limits.max_request_mb * 1048576 - 200) * 3 / 4);
}

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
    image.onerror = () => reject(new Error("the browser could not show it"));
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

// Segment the picture `source` (a Blob, or a promise of one) called `name`.
async function segment(source, name) {
  const ticket = ++latest;
  const current = () => ticket === latest;
  if (inFlight) inFlight.abort();
  const controller = new AbortController();
  inFlight = controller;
  clearError();
  clearResult();
  setState("busy");
  $("status").textContent = `Segmenting ${name}…`;
  let blob, answer, response, started;
  try {
    blob = await source;
    if (!current()) return;
    if (blob.size > maxFileBytes()) {
      showError(`This file is ${megabytes(blob.size)}; the server takes pictures up to ` +
                `${megabytes(maxFileBytes())}. Use a smaller picture.`);
      return;
    }
    const body = JSON.stringify({signature_name: "serving_bytes_png",
                                 instances: [{b64: toBase64(await blob.arrayBuffer())}]});
    if (!current()) return;
    started = performance.now();
    response = await fetch(info.predict_url, {method: "POST", body, signal: controller.signal,
                                              headers: {"Content-Type": "application/json"}});
    answer = await response.json().catch(() => ({error: "the answer was not JSON"}));
  } catch (error) {
    if (!current()) return;  // aborted for a newer picture
    showError("Could not reach the server. Check that it is still running, then try again.",
              String(error.message || error));
    return;
  }
  if (!current()) return;
  const roundTrip = performance.now() - started;
  if (!response.ok) {
    showError(explain(response.status, answer.error), `HTTP ${response.status}: ${answer.error}`);
    return;
  }
  const prediction = answer.predictions[0];
  let input, mask;
  try {
    input = await loadImage(URL.createObjectURL(blob));
    mask = await loadImage("data:image/png;base64," + prediction.class_ids_png_bytes.b64);
  } catch (error) {
    if (current()) {
      showError(`The server segmented ${name}, but this browser cannot show that picture.`,
                error.message);
    }
    return;
  }
  if (!current()) return;
  shown = {input, mask};
  $("input").src = input.src;
  $("source").textContent = name;
  $("result").dataset.source = name;
  $("result").hidden = false;
  drawOverlay();
  fillLegend(prediction.class_pixel_counts);
  const timing = /dur=([0-9.]+)/.exec(response.headers.get("Server-Timing") || "");
  $("latency").textContent = `Server ${timing ? Number(timing[1]).toFixed(1) : "?"} ms, ` +
    `round trip ${roundTrip.toFixed(1)} ms (${input.naturalWidth}×${input.naturalHeight} pixels)`;
  $("status").textContent = "";
  inFlight = null;
  setState("done");
}

async function start() {
  try {
    const response = await fetch("/info");
    info = await response.json();
  } catch (error) {
    showError("Could not reach the server. Check that it is running, then reload the page.",
              String(error.message || error));
    return;
  }
  $("model").textContent = `Model ${info.model} version ${info.version}` +
    (info.architecture ? ` (${info.architecture}${info.backbone ? " / " + info.backbone : ""})` : "") +
    `, ${info.class_names.length} classes`;
  $("api").textContent = `POST ${info.predict_url}`;
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) segment(file, file.name);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) segment(file, file.name);
  });
  document.querySelectorAll(".sample").forEach((button) => {
    button.addEventListener("click", () => {
      const src = button.dataset.src;
      segment(fetch(src).then((response) => response.blob()), src.split("/").pop());
    });
  });
  $("opacity").addEventListener("input", drawOverlay);
  setState("idle");
}

start();
