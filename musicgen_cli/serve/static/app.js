// The mgen serve page: a form that queues takes, live progress from each job's event stream,
// the queue with cancel, and the history of takes (player, waveform, settings, extend, delete).
"use strict";

const $ = (id) => document.getElementById(id);
const jobs = new Map(); // id -> the job as the API last described it
const streams = new Map(); // id -> its EventSource
const peaks = new Map(); // id -> waveform peaks, computed once per take
let extendFrom = null; // a take's id: the next take continues it
let melody = null; // {id, name} of an uploaded melody
let older = null; // the `before` cursor of the next page of history

// Inputs named after the API's fields, sent as numbers / as booleans / as text.
const NUMBERS = ["duration", "num_samples", "temperature", "top_k", "top_p", "guidance", "fade_in_s", "fade_out_s"];
const CHECKS = ["greedy", "loop"];
const CHOICES = ["format", "normalize", "ending"];

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const response = await fetch(path, init);
  if (response.status === 401) $("login").hidden = false;
  return response;
}

function showError(said) {
  const box = $("error");
  if (!said) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = said.error || String(said);
  if (said.fix) { const fix = document.createElement("span"); fix.className = "fix"; fix.textContent = said.fix; box.append(fix); }
  box.hidden = false;
}

function human(bytes) {
  if (bytes == null) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function clock(seconds) {
  if (seconds == null || !isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

// -- the form -------------------------------------------------------------------------------
function requestFromForm() {
  const body = { prompt: $("prompt").value.trim(), model: $("model").value || null };
  for (const name of NUMBERS) { const v = $(name).value; if (v !== "") body[name] = Number(v); }
  for (const name of CHECKS) body[name] = $(name).checked;
  for (const name of CHOICES) body[name] = $(name).value;
  if (!$("seed-random").checked && $("seed").value !== "") body.seed = Number($("seed").value);
  const sections = $("segments").value.trim();
  if (sections) body.segments = sections;
  if (melody) body.melody = melody.id;
  if (extendFrom) body.continuation = extendFrom;
  return body;
}

function fillForm(job) {
  const r = job.request || {};
  $("prompt").value = r.prompt || "";
  for (const name of [...NUMBERS, ...CHOICES]) {
    const input = $(name);
    input.value = r[name] ?? input.defaultValue ?? input.querySelector("option")?.value;
  }
  for (const name of CHOICES) if (r[name] == null) $(name).selectedIndex = 0;
  for (const name of CHECKS) $(name).checked = Boolean(r[name]);
  $("seed").value = job.seed;
  $("seed-random").checked = false;
  $("segments").value = Array.isArray(r.segments) ? r.segments.join("\n") : (r.segments || "");
  if ([...$("model").options].some((o) => o.value === job.model)) $("model").value = job.model;
  $("prompt").focus();
}

function setExtend(job) {
  extendFrom = job ? job.id : null;
  $("extending").hidden = !job;
  if (job) {
    $("extending-name").textContent = `“${job.request.prompt || job.files[0]?.name}”`;
    if (!$("prompt").value.trim()) $("prompt").value = job.request.prompt || "";
  }
}

async function submit(event) {
  event.preventDefault();
  showError(null);
  const response = await api("POST", "/v1/generations", requestFromForm());
  const said = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (response.status !== 202) { showError(said); return; }
  jobs.set(said.id, said);
  setExtend(null);
  render();
  follow(said);
}

async function uploadMelody() {
  const file = $("melody-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  const response = await api("POST", "/v1/uploads", form);
  const said = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  $("melody-file").value = "";
  if (response.status !== 201) { showError(said); return; }
  showError(null);
  melody = { id: said.id, name: `${file.name} (${said.duration_s.toFixed(1)} s)` };
  $("melody-name").textContent = melody.name;
  $("melody-chip").hidden = false;
}

// -- following jobs -------------------------------------------------------------------------
function follow(job) {
  if (streams.has(job.id) || !["queued", "running"].includes(job.state)) return;
  const source = new EventSource(`/v1/generations/${job.id}/events`);
  streams.set(job.id, source);
  const update = (change) => { jobs.set(job.id, { ...jobs.get(job.id), ...change }); render(); };
  source.addEventListener("queued", (e) => update({ state: "queued", position: JSON.parse(e.data).position }));
  source.addEventListener("started", () => { update({ state: "running", phase: "starting", progress: null }); });
  source.addEventListener("requeued", () => update({ state: "queued" }));
  source.addEventListener("phase", (e) => {
    const p = JSON.parse(e.data);
    update({ phase: `${p.name} ${p.detail || ""}`.trim() });
  });
  source.addEventListener("progress", (e) => update({ progress: JSON.parse(e.data) }));
  for (const end of ["done", "failed", "cancelled"]) {
    source.addEventListener(end, async () => {
      source.close();
      streams.delete(job.id);
      const response = await api("GET", `/v1/generations/${job.id}`);
      if (response.ok) jobs.set(job.id, await response.json());
      render();
    });
  }
}

async function cancel(id) {
  const response = await api("DELETE", `/v1/generations/${id}`);
  if (response.status === 200) { jobs.set(id, { ...jobs.get(id), state: "cancelled" }); render(); }
}

async function remove(id) {
  const response = await api("DELETE", `/v1/generations/${id}`);
  if (response.status === 204) { jobs.delete(id); peaks.delete(id); render(); }
}

// -- drawing --------------------------------------------------------------------------------
function renderNow(running) {
  const now = $("now");
  now.classList.toggle("idle", !running);
  if (!running) {
    $("now-title").textContent = "Nothing running";
    for (const id of ["now-phase", "now-audio", "now-speed", "now-eta", "now-mem"]) $(id).textContent = "";
    $("progress").value = 0;
    return;
  }
  $("now-title").textContent = running.request.prompt || "(sections)";
  const p = running.progress;
  $("now-phase").textContent = (p && p.section) || running.phase || "";
  if (p && p.total) {
    $("progress").max = p.total;
    $("progress").value = p.done;
    $("now-audio").textContent = p.audio_s != null ? `${p.audio_s.toFixed(1)} / ${p.total_s.toFixed(1)} s of audio` : `${p.done} / ${p.total}`;
    $("now-speed").textContent = p.steps_per_s ? `${p.steps_per_s.toFixed(1)} steps/s` : "";
    $("now-eta").textContent = p.eta_s != null ? `ETA ${clock(p.eta_s)}` : "";
    $("now-mem").textContent = p.readouts && p.readouts.rss_bytes ? `RAM ${human(p.readouts.rss_bytes)}` : "";
  }
}

function queueItem(job) {
  const li = document.createElement("li");
  li.dataset.id = job.id;
  const text = document.createElement("span");
  text.className = "q-prompt";
  text.textContent = job.request.prompt || "(sections)";
  const where = document.createElement("span");
  where.className = "dim q-where";
  const stop = document.createElement("button");
  stop.type = "button";
  stop.className = "cancel danger";
  stop.textContent = "cancel";
  stop.onclick = () => cancel(job.id);
  li.append(text, where, stop);
  return li;
}

function renderQueue(waiting) {
  // Items are kept across updates, so a cancel button never moves under the pointer.
  const list = $("queue");
  const shown = new Map([...list.children].map((li) => [li.dataset.id, li]));
  const items = waiting.map((job) => {
    const li = shown.get(job.id) || queueItem(job);
    li.className = `queued ${job.state}`;
    li.querySelector(".q-where").textContent =
      job.state === "running" ? "running" : `#${(job.position ?? 0) + 1} · ${job.request.duration ?? 10} s`;
    return li;
  });
  if (items.length !== list.children.length || items.some((li, i) => list.children[i] !== li)) list.replaceChildren(...items);
  $("queue-count").textContent = waiting.length ? `(${waiting.length})` : "";
}

function takeElement(job) {
  const li = $("take-template").content.firstElementChild.cloneNode(true);
  li.dataset.id = job.id;
  li.classList.add(job.state);
  li.querySelector(".take-prompt").textContent = job.request.prompt || "(sections)";
  const when = new Date((job.finished || job.created) * 1000);
  const seconds = job.summary && job.summary.duration_s;
  li.querySelector(".take-state").textContent =
    job.state === "done" ? when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : job.state === "failed" ? `failed: ${job.error ? job.error.error : ""}` : job.state;
  li.querySelector(".take-meta").textContent = [
    seconds != null ? `${seconds.toFixed(1)} s` : null, `seed ${job.seed}`, job.model,
    job.request.continuation ? "continues a take" : null,
    job.summary && job.summary.realtime_factor ? `${job.summary.realtime_factor.toFixed(2)}× real time` : null,
  ].filter(Boolean).join(" · ");
  const audio = li.querySelector("audio");
  const canvas = li.querySelector(".wave");
  const download = li.querySelector(".download");
  if (job.state === "done" && job.files.length) {
    audio.src = job.files[0].audio;
    download.href = job.files[0].audio;
    download.setAttribute("download", job.files[0].name);
    drawWave(job, canvas, audio);
    audio.addEventListener("timeupdate", () => drawWave(job, canvas, audio));
    canvas.addEventListener("click", (e) => {
      if (!audio.duration) return;
      audio.currentTime = audio.duration * (e.offsetX / canvas.clientWidth);
    });
  } else {
    audio.remove(); canvas.remove(); download.remove();
    li.querySelector(".extend").remove();
  }
  li.querySelector(".use-settings").onclick = () => fillForm(job);
  const extend = li.querySelector(".extend");
  if (extend) extend.onclick = () => { fillForm(job); setExtend(job); };
  li.querySelector(".delete").onclick = () => remove(job.id);
  return li;
}

async function drawWave(job, canvas, audio) {
  if (!peaks.has(job.id)) {
    peaks.set(job.id, null);
    try {
      const data = await (await fetch(job.files[0].audio)).arrayBuffer();
      const buffer = await new OfflineAudioContext(1, 1, 8000).decodeAudioData(data);
      const samples = buffer.getChannelData(0);
      const bins = 160, step = Math.max(1, Math.floor(samples.length / bins)), out = [];
      for (let b = 0; b < bins; b++) {
        let top = 0;
        for (let i = b * step; i < Math.min(samples.length, (b + 1) * step); i++) top = Math.max(top, Math.abs(samples[i]));
        out.push(top);
      }
      peaks.set(job.id, out);
    } catch (err) {
      peaks.set(job.id, []);
    }
  }
  const values = peaks.get(job.id);
  if (!values) { setTimeout(() => drawWave(job, canvas, audio), 200); return; }
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, mid = h / 2, bar = w / Math.max(1, values.length);
  const played = audio.duration ? audio.currentTime / audio.duration : 0;
  const style = getComputedStyle(document.documentElement);
  ctx.clearRect(0, 0, w, h);
  values.forEach((v, i) => {
    ctx.fillStyle = i / values.length < played ? style.getPropertyValue("--played") : style.getPropertyValue("--wave");
    const y = Math.max(1, v * (h / 2 - 2));
    ctx.fillRect(i * bar, mid - y, Math.max(1, bar - 2), 2 * y);
  });
}

function render() {
  const all = [...jobs.values()].sort((a, b) => b.created - a.created);
  const waiting = all.filter((j) => ["queued", "running"].includes(j.state)).reverse();
  renderNow(all.find((j) => j.state === "running"));
  renderQueue(waiting);
  const history = $("history");
  const shown = new Map([...history.children].map((li) => [li.dataset.id, li]));
  const takes = all.filter((j) => !["queued", "running"].includes(j.state));
  const items = takes.map((job) => {
    const li = shown.get(job.id);
    return li && li.classList.contains(job.state) ? li : takeElement(job);
  });
  if (items.length !== history.children.length || items.some((li, i) => history.children[i] !== li)) history.replaceChildren(...items);
  $("older").hidden = older == null;
}

// -- loading --------------------------------------------------------------------------------
async function loadPage(before) {
  const query = before != null ? `?limit=30&before=${before}` : "?limit=30";
  const response = await api("GET", `/v1/generations${query}`);
  if (!response.ok) return;
  const page = await response.json();
  for (const job of page.generations) { jobs.set(job.id, job); follow(job); }
  older = page.next;
  render();
}

async function loadModels() {
  const response = await api("GET", "/v1/models");
  if (!response.ok) return;
  const said = await response.json();
  const select = $("model");
  select.replaceChildren(...said.models.filter((m) => m.cached || m.key === said.loaded).map((m) => {
    const option = document.createElement("option");
    option.value = m.key;
    option.textContent = m.key + (m.key === said.loaded ? " (loaded)" : "");
    option.selected = m.key === said.loaded;
    return option;
  }));
}

async function health() {
  try {
    const response = await fetch("/v1/health");
    if (!response.ok) throw new Error(String(response.status));
    const h = await response.json();
    $("health").className = "health ok";
    $("health").textContent = `${h.model} · ${h.queue_depth} in queue · RAM ${human(h.memory.rss_bytes)}`;
  } catch (err) {
    $("health").className = "health down";
    $("health").textContent = "server unreachable";
  }
}

async function login(event) {
  event.preventDefault();
  const response = await fetch("/v1/login", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: $("token").value }),
  });
  if (response.status !== 204) {
    $("login-error").textContent = (await response.json()).error;
    $("login-error").hidden = false;
    return;
  }
  $("login").hidden = true;
  start();
}

function start() {
  loadModels();
  loadPage();
  health();
}

$("form").addEventListener("submit", submit);
$("login-form").addEventListener("submit", login);
$("melody-file").addEventListener("change", uploadMelody);
$("melody-clear").onclick = () => { melody = null; $("melody-chip").hidden = true; };
$("extending-clear").onclick = () => setExtend(null);
$("seed-random").addEventListener("change", () => { if ($("seed-random").checked) $("seed").value = ""; });
$("seed").addEventListener("input", () => { $("seed-random").checked = $("seed").value === ""; });
$("older").onclick = () => loadPage(older);
$("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("form").requestSubmit(); });
setInterval(health, 3000);
start();
