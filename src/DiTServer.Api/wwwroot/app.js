// DiTServer playground: plain JS, no build step. Talks to /v1/classes, /v1/models and /v1/jobs (+ its SSE events).
// With an init image the job is an edit: init_image, strength and (when painted) mask, as on POST /v1/images.
"use strict";
const $ = (id) => document.getElementById(id);
let classes = [];
let samplers = []; // [{ name, defaultSteps }] from /v1/models
let defaultCache = null; // the model's default_cache from /v1/models: { interval, mode, min_steps, samplers }, or null
let current = null; // { id, events }
let imageSize = 0; // the model's image side in pixels, from /v1/models
let init = null; // { painted } while an init image is loaded
let lastInput = null; // { src, masked } of the edit last submitted, shown beside its result

async function problemText(response) {
  try {
    const p = await response.json();
    return p.detail || p.title || `${response.status} ${response.statusText}`;
  } catch { return `${response.status} ${response.statusText}`; }
}

// The tenant key (servers with tenants answer 401 without it), kept in localStorage and sent on generation and job calls.
const keyStore = "ditserver.apiKey";
function authHeaders(headers = {}) {
  const key = $("api-key").value.trim();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setBusy(busy) {
  $("generate").disabled = busy;
  $("cancel").hidden = !busy;
}

function renderClasses() {
  const query = $("class-search").value.trim().toLowerCase();
  const select = $("class");
  const selected = select.value;
  select.replaceChildren();
  for (const c of classes) {
    const names = [c.name, ...(c.aliases || [])].map((n) => n.toLowerCase());
    if (query && String(c.index) !== query && !names.some((n) => n.includes(query))) continue;
    const option = new Option(`${c.index} · ${c.name}`, c.index);
    select.add(option);
  }
  if ([...select.options].some((o) => o.value === selected)) select.value = selected;
  else if (select.options.length > 0) select.selectedIndex = 0;
}

async function load() {
  try {
    const [models, list] = await Promise.all([fetch("/v1/models"), fetch("/v1/classes")]);
    if (!models.ok) throw new Error(await problemText(models));
    if (!list.ok) throw new Error(await problemText(list));
    const model = (await models.json()).models[0];
    classes = (await list.json()).classes;
    imageSize = model.image_size;
    $("model-info").textContent = `${model.name} · ${model.architecture} · ${model.image_size}px · ${model.num_classes} classes · ${model.device}`;
    $("count").max = model.limits.max_images_per_request;
    $("count").value = Math.min(Number($("count").value), model.limits.max_images_per_request);
    for (const id of ["steps", "steps-number"]) $(id).max = Math.min(model.limits.max_steps, 1000);
    if (!model.supports_guidance) { $("cfg").value = 1; $("cfg").disabled = true; }
    samplers = (model.samplers || []).map(readSampler).filter((s) => s.name);
    defaultCache = model.default_cache || null;
    fillSelect($("sampler"), samplers.map((s) => s.name));
    // Start at what a request without sampler and steps gets: the served model's default_sampler and its default_steps.
    if (samplers.some((s) => s.name === model.default_sampler)) $("sampler").value = model.default_sampler;
    fillSelect($("guidance"), model.guidance_modes || []);
    $("guidance").disabled = !model.supports_guidance;
    applySamplerDefaults();
    renderClasses();
    syncOutputs();
  } catch (e) {
    showError(`Could not load the model: ${e.message}`);
  }
}

// /v1/models lists samplers as names ("ddim") or as objects ({"name": "ddim", "default_steps": 50, ...}); both work.
function readSampler(entry) {
  if (typeof entry === "string") return { name: entry, defaultSteps: null };
  const steps = Number(entry?.default_steps);
  return { name: entry?.name, defaultSteps: Number.isFinite(steps) && steps > 0 ? steps : null };
}

function fillSelect(select, names) {
  select.replaceChildren(...names.map((n) => new Option(n, n)));
  select.disabled = names.length === 0;
}

// A sampler with its own default step count sets the steps when chosen; the user can still change them.
function applySamplerDefaults() {
  const chosen = samplers.find((s) => s.name === $("sampler").value);
  if (chosen?.defaultSteps) setSteps(chosen.defaultSteps);
  showCacheDefault();
}

function setSteps(value) {
  const max = Number($("steps").max);
  const steps = Math.min(Math.max(1, Math.round(Number(value) || 1)), max);
  $("steps").value = steps;
  $("steps-number").value = steps;
  showCacheDefault();
}

// The server caches features by default for the model's long samplers (the page sends no cache_interval): say so.
function showCacheDefault() {
  const d = defaultCache;
  const applies = d && (d.samplers || []).includes($("sampler").value) && Number($("steps").value) >= d.min_steps;
  $("cache-hint").textContent = applies
    ? `Feature caching (this model's default): the transformer blocks run on 1 step in ${d.interval}, cache mode ${d.mode}.`
    : "";
}

function syncOutputs() {
  $("steps-number").value = $("steps").value;
  showCacheDefault();
  $("cfg-value").textContent = $("cfg").value;
  $("seed").disabled = $("random-seed").checked;
}

async function generate(event) {
  event.preventDefault();
  showError("");
  if ($("class").value === "") { showError("Pick a class first."); return; }
  const body = {
    class_label: Number($("class").value),
    num_images: Number($("count").value),
    steps: Number($("steps").value),
    cfg_scale: Number($("cfg").value),
  };
  if ($("sampler").value) body.sampler = $("sampler").value;
  if ($("guidance").value && !$("guidance").disabled) body.guidance = $("guidance").value;
  if (!$("random-seed").checked) body.seed = Number($("seed").value);
  lastInput = null;
  if (init) {
    body.init_image = base64Of($("init-canvas"));
    body.strength = Number($("strength").value);
    if (init.painted) body.mask = base64Of(maskImage());
    lastInput = { src: inputPicture(), masked: init.painted };
  }
  // About ten previews per job (every 5 steps at 50); the server never sends one for the last step.
  body.preview_every = Math.max(1, Math.ceil(body.steps / 10));
  $("results").replaceChildren();
  $("downloads").hidden = true;
  setBusy(true);
  $("status").textContent = "Submitting…";
  try {
    const response = await fetch("/v1/jobs", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(await problemText(response) + (response.status === 401 ? " (enter it under API key)" : ""));
    const job = await response.json();
    if ($("random-seed").checked) $("seed").value = job.parameters.seed; // shown, so it can be reused
    follow(job);
  } catch (e) {
    setBusy(false);
    $("status").textContent = "Not started.";
    showError(e.message);
  }
}

function follow(job) {
  // EventSource cannot send a header, so with a key the stream is read through fetch.
  const events = $("api-key").value.trim() ? new KeyedEventSource(`/v1/jobs/${job.id}/events`) : new EventSource(`/v1/jobs/${job.id}/events`);
  current = { id: job.id, events };
  const progress = $("progress");
  progress.hidden = false;
  progress.removeAttribute("value"); // indeterminate while queued
  const end = () => { events.close(); current = null; setBusy(false); };
  // The ETA comes from measured step time: from the first progress event on (queue wait and warm-up excluded).
  let first = null;
  events.addEventListener("queued", (e) => {
    const s = JSON.parse(e.data);
    $("status").textContent = `Queued: place ${s.queue_position ?? "?"} in the queue.`;
  });
  events.addEventListener("progress", (e) => {
    const s = JSON.parse(e.data);
    progress.max = s.total_steps;
    progress.value = s.step;
    const now = performance.now();
    if (first === null) first = { step: s.step, at: now };
    const perStep = s.step > first.step ? (now - first.at) / (s.step - first.step) : null;
    const eta = perStep === null ? "" : ` · about ${formatSeconds(perStep * (s.total_steps - s.step) / 1000)} left (${Math.round(perStep)} ms/step)`;
    $("status").textContent = `Denoising: step ${s.step} of ${s.total_steps}${eta}.`;
  });
  events.addEventListener("preview", (e) => {
    if (current?.events !== events) return; // a late preview of a job that has already ended
    showPreview(JSON.parse(e.data));
  });
  events.addEventListener("done", async (e) => {
    const s = JSON.parse(e.data);
    end();
    progress.max = s.total_steps; progress.value = s.total_steps;
    $("status").textContent = "Done.";
    await showResult(s);
  });
  events.addEventListener("failed", (e) => {
    end();
    $("status").textContent = "Failed.";
    $("results").replaceChildren(); // a preview is not a result
    showError(JSON.parse(e.data).error || "the job failed");
  });
  events.addEventListener("cancelled", () => {
    end();
    progress.hidden = true;
    $("results").replaceChildren(); // a preview is not a result
    $("status").textContent = "Cancelled.";
  });
  events.onerror = () => {
    if (current?.events !== events) return; // already finished
    end();
    showError("Lost the connection to the server's event stream.");
  };
}

// The part of EventSource that follow() uses (named events, onerror, close), over fetch so that it sends the key.
class KeyedEventSource extends EventTarget {
  constructor(url) {
    super();
    this.onerror = null;
    this.controller = new AbortController();
    this.read(url).catch(() => { if (!this.controller.signal.aborted) this.onerror?.(); });
  }
  async read(url) {
    const response = await fetch(url, { headers: authHeaders({ Accept: "text/event-stream" }), signal: this.controller.signal });
    if (!response.ok || !response.body) throw new Error(`${response.status}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended");
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let type = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) type = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length > 0) this.dispatchEvent(new MessageEvent(type, { data: data.join("\n") }));
      }
    }
  }
  close() { this.controller.abort(); }
}

function formatSeconds(seconds) {
  if (seconds < 1) return "<1 s";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

// The latest preview stands in the result area until the images arrive: small PNGs of the predicted final images.
function showPreview(preview) {
  const figures = preview.images.map((image) => {
    const figure = document.createElement("figure");
    figure.className = "preview";
    const img = document.createElement("img");
    img.className = "preview";
    img.src = `data:image/png;base64,${image.png_base64}`;
    img.alt = `preview of image ${image.index} after step ${preview.step}`;
    const caption = document.createElement("figcaption");
    caption.textContent = `#${image.index} · step ${preview.step}/${preview.total_steps}`;
    figure.append(img, caption);
    return figure;
  });
  $("results").replaceChildren(...figures);
}

async function showResult(job) {
  try {
    const response = await fetch(job.result_url, { headers: authHeaders({ Accept: "application/json" }) });
    if (!response.ok) throw new Error(await problemText(response));
    const result = await response.json();
    const figures = result.images.map((image) => {
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.src = `data:image/png;base64,${image.png_base64}`;
      img.alt = `${image.class_name}, seed ${image.seed}, image ${image.index}`;
      const caption = document.createElement("figcaption");
      const link = document.createElement("a");
      // A plain link cannot send the key; the image's own bytes can be saved without one.
      link.href = $("api-key").value.trim() ? img.src : `${job.result_url}?index=${image.index}`;
      link.download = `${image.class_name}-${image.seed}-${image.index}.png`;
      link.textContent = `#${image.index} ${image.class_name}`;
      caption.append(link);
      figure.append(img, caption);
      return figure;
    });
    if (lastInput) figures.unshift(inputFigure(lastInput));
    $("results").replaceChildren(...figures);
    $("download").href = $("api-key").value.trim() ? await gridUrl(job.result_url) : job.result_url;
    $("download").download = `job-${job.id}.png`;
    $("downloads").hidden = false;
  } catch (e) {
    showError(`Could not fetch the result: ${e.message}`);
  }
}

// The grid PNG fetched with the key, as a blob: URL a download link can use (the previous job's is released).
let gridBlobUrl = null;
async function gridUrl(url) {
  const response = await fetch(url, { headers: authHeaders({ Accept: "image/png" }) });
  if (!response.ok) throw new Error(await problemText(response));
  if (gridBlobUrl) URL.revokeObjectURL(gridBlobUrl);
  gridBlobUrl = URL.createObjectURL(await response.blob());
  return gridBlobUrl;
}

async function cancel() {
  if (!current) return;
  const response = await fetch(`/v1/jobs/${current.id}`, { method: "DELETE", headers: authHeaders() });
  if (!response.ok && response.status !== 204) showError(await problemText(response));
}

// --- Start from an image: upload or drop, a strength slider, a mask painted with the mouse ---

// The picture at the model's size (centre square, scaled), on the init canvas; the mask canvas over it starts empty.
async function loadInit(file) {
  showError("");
  if (!file || !imageSize) return;
  let bitmap;
  try { bitmap = await createImageBitmap(file); }
  catch { showError(`${file.name} is not a picture this browser can read.`); return; }
  const side = Math.min(bitmap.width, bitmap.height);
  for (const id of ["init-canvas", "mask-canvas"]) { $(id).width = imageSize; $(id).height = imageSize; }
  const context = $("init-canvas").getContext("2d");
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side, 0, 0, imageSize, imageSize);
  bitmap.close();
  init = { painted: false };
  $("brush").max = Math.max(1, Math.round(imageSize / 4));
  $("brush").value = Math.max(1, Math.round(imageSize / 10));
  showInit(true);
}

function showInit(shown) {
  $("init-stack").hidden = !shown;
  $("init-help").hidden = !shown;
  $("init-hint").hidden = shown;
  for (const id of ["strength", "brush", "clear-mask", "remove-init"]) $(id).disabled = !shown;
  if (!shown) $("init-file").value = "";
  syncInitOutputs();
}

function syncInitOutputs() {
  $("strength-value").textContent = Number($("strength").value).toFixed(2);
  $("brush-value").textContent = `${$("brush").value} px`;
}

function clearMask() {
  const canvas = $("mask-canvas");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  if (init) init.painted = false;
}

// Painting: a round brush in model pixels, joined from the last point so a fast stroke leaves no gaps.
let stroke = null; // the last point of the stroke being painted
function modelPoint(event) {
  const rect = $("mask-canvas").getBoundingClientRect();
  return { x: (event.clientX - rect.left) / rect.width * imageSize, y: (event.clientY - rect.top) / rect.height * imageSize };
}
function paint(event) {
  if (!init || !stroke) return;
  const point = modelPoint(event);
  const context = $("mask-canvas").getContext("2d");
  context.strokeStyle = context.fillStyle = "rgba(255, 64, 64, 0.6)";
  context.lineWidth = Number($("brush").value);
  context.lineCap = "round";
  context.beginPath();
  context.moveTo(stroke.x, stroke.y);
  context.lineTo(point.x + 0.01, point.y);
  context.stroke();
  stroke = point;
  init.painted = true;
}

// The native mask: white where painted (redrawn), black elsewhere (kept).
function maskImage() {
  const painted = $("mask-canvas").getContext("2d").getImageData(0, 0, imageSize, imageSize);
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = imageSize;
  const context = canvas.getContext("2d");
  const mask = context.createImageData(imageSize, imageSize);
  for (let i = 0; i < painted.data.length; i += 4) {
    const value = painted.data[i + 3] > 0 ? 255 : 0;
    mask.data.set([value, value, value, 255], i);
  }
  context.putImageData(mask, 0, 0);
  return canvas;
}

// What the result is shown beside: the picture sent, with the painted region tinted.
function inputPicture() {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = imageSize;
  const context = canvas.getContext("2d");
  context.drawImage($("init-canvas"), 0, 0);
  context.drawImage($("mask-canvas"), 0, 0);
  return canvas.toDataURL("image/png");
}

function inputFigure(input) {
  const figure = document.createElement("figure");
  figure.className = "input";
  const img = document.createElement("img");
  img.src = input.src;
  img.alt = input.masked ? "the input, its mask tinted" : "the input";
  const caption = document.createElement("figcaption");
  caption.textContent = input.masked ? "input · mask" : "input";
  figure.append(img, caption);
  return figure;
}

function base64Of(canvas) { return canvas.toDataURL("image/png").split(",")[1]; }

$("init-file").addEventListener("change", () => loadInit($("init-file").files[0]));
$("init-drop").addEventListener("dragover", (e) => { e.preventDefault(); $("init-drop").classList.add("over"); });
$("init-drop").addEventListener("dragleave", () => $("init-drop").classList.remove("over"));
$("init-drop").addEventListener("drop", (e) => {
  e.preventDefault();
  $("init-drop").classList.remove("over");
  loadInit(e.dataTransfer.files[0]);
});
$("mask-canvas").addEventListener("pointerdown", (e) => {
  $("mask-canvas").setPointerCapture(e.pointerId);
  stroke = modelPoint(e);
  paint(e);
});
$("mask-canvas").addEventListener("pointermove", paint);
for (const type of ["pointerup", "pointercancel"]) $("mask-canvas").addEventListener(type, () => { stroke = null; });
$("strength").addEventListener("input", syncInitOutputs);
$("brush").addEventListener("input", syncInitOutputs);
$("clear-mask").addEventListener("click", clearMask);
$("remove-init").addEventListener("click", () => { init = null; clearMask(); showInit(false); });
showInit(false);

$("class-search").addEventListener("input", renderClasses);
$("steps").addEventListener("input", syncOutputs);
$("steps-number").addEventListener("input", () => { if ($("steps-number").value !== "") setSteps($("steps-number").value); });
$("steps-number").addEventListener("change", () => setSteps($("steps-number").value));
$("sampler").addEventListener("change", applySamplerDefaults);
$("cfg").addEventListener("input", syncOutputs);
$("random-seed").addEventListener("change", syncOutputs);
$("form").addEventListener("submit", generate);
$("cancel").addEventListener("click", cancel);
$("api-key").value = localStorage.getItem(keyStore) ?? "";
$("api-key").addEventListener("change", () => {
  const key = $("api-key").value.trim();
  if (key) localStorage.setItem(keyStore, key); else localStorage.removeItem(keyStore);
});
load();
