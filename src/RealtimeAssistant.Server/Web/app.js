// The viewer page of `ra serve`: plain JS, no build step. A file stream is watched as MJPEG (the
// overlay burned in by the server) with its events over SSE; the webcam is a push stream: this
// page sends JPEG frames over the stream's WebSocket and gets the same events back on it.
'use strict';

const $ = id => document.getElementById(id);
const PUSH_FPS = 8;                 // frames the webcam path sends per second
const state = { id: null, events: null, ws: null, camStream: null, timer: null, segment: null, text: '', sent: 0, answers: new Map() };
window.raState = state;             // for tests and the curious
const page = { apiKeyRequired: false }; // from /page.json

// The key the user has committed (change fires on Enter or leaving the field), never one half typed:
// a request sent mid-typing would fail with 401.
let committedKey = sessionStorage.getItem('ra-key') || '';
const key = () => committedKey;
$('key').value = committedKey;
$('key').addEventListener('change', () => { committedKey = $('key').value.trim(); sessionStorage.setItem('ra-key', committedKey); loadFiles(); });
const withKey = url => key() ? `${url}${url.includes('?') ? '&' : '?'}api_key=${encodeURIComponent(key())}` : url;

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (key()) headers.Authorization = `Bearer ${key()}`;
  if (options.body) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { ...options, headers });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error(body?.error?.message || `HTTP ${r.status}`);
  return body;
}

function status(text) { $('status').textContent = text; }

async function loadFiles() {
  if (!key() && page.apiKeyRequired) return status('this server wants its API key: enter it above');
  try {
    const list = await api('/v1/media');
    const select = $('file');
    select.replaceChildren(...list.data.map(f => new Option(`${f.path} (${(f.bytes / 1e6).toFixed(1)} MB)`, f.path)));
    if (list.data.length === 0) select.replaceChildren(new Option('(no video files in the media folder)', ''));
  } catch (e) { status(`cannot list the media folder: ${e.message}`); }
}

async function open(body) {
  await stop();
  const s = await api('/v1/streams', { method: 'POST', body: JSON.stringify(body) });
  state.id = s.id;
  state.segment = null; state.text = ''; state.sent = 0; state.answers.clear();
  $('answers').replaceChildren(); $('history').replaceChildren(); $('caption').textContent = '';
  $('stop').disabled = false; $('question').disabled = false; $('ask-button').disabled = false;
  $('placeholder').hidden = true;
  status(`stream ${s.id}: ${s.kind} ${s.source}`);
  return s;
}

async function startFile() {
  const file = $('file').value;
  if (!file) return status('no file chosen');
  try {
    const s = await open({ source: file, loop: true });
    const img = $('mjpeg');
    img.src = withKey(`/v1/streams/${s.id}/video`);
    img.hidden = false; $('cam').hidden = true; $('cam-caption').hidden = true;
    const es = new EventSource(withKey(`/v1/streams/${s.id}/events`));
    for (const type of ['state', 'delta', 'segment', 'question', 'answer', 'stats', 'gap', 'end'])
      es.addEventListener(type, e => handle(type, JSON.parse(e.data)));
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) status('event stream closed'); };
    state.events = es;
  } catch (e) { status(`cannot open the stream: ${e.message}`); }
}

async function startCam() {
  let media;
  try { media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false }); }
  catch (e) { return status(`no webcam: ${e.message}`); }
  try {
    const s = await open({ source: 'push', fps: PUSH_FPS });
    state.camStream = media;
    const video = $('cam');
    video.srcObject = media;
    video.hidden = false; $('cam-caption').hidden = false; $('mjpeg').hidden = true;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(withKey(`${scheme}://${location.host}/v1/streams/${s.id}/ws`));
    ws.onmessage = m => { const e = JSON.parse(m.data); handle(e.event, e.data); };
    ws.onclose = e => status(`webcam stream closed${e.reason ? ': ' + e.reason : ''}`);
    ws.onopen = () => {
      const canvas = document.createElement('canvas');
      state.timer = setInterval(() => sendFrame(ws, video, canvas), 1000 / PUSH_FPS);
    };
    state.ws = ws;
  } catch (e) { media.getTracks().forEach(t => t.stop()); status(`cannot open the stream: ${e.message}`); }
}

function sendFrame(ws, video, canvas) {
  if (ws.readyState !== WebSocket.OPEN || !video.videoWidth || ws.bufferedAmount > 1 << 20) return; // never queue frames up
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  canvas.toBlob(blob => { if (blob && ws.readyState === WebSocket.OPEN) { ws.send(blob); state.sent++; $('hud-sent').textContent = state.sent; } }, 'image/jpeg', 0.8);
}

async function stop() {
  clearInterval(state.timer); state.timer = null;
  state.events?.close(); state.events = null;
  if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; } // closed by us: no 'closed' notice
  state.camStream?.getTracks().forEach(t => t.stop()); state.camStream = null;
  $('mjpeg').removeAttribute('src');
  const id = state.id;
  state.id = null;
  $('stop').disabled = true; $('question').disabled = true; $('ask-button').disabled = true;
  if (id) { try { await api(`/v1/streams/${id}`, { method: 'DELETE' }); status(`stream ${id} deleted`); } catch (e) { status(e.message); } }
}

function showCaption(text, streaming) {
  const c = $('caption');
  c.textContent = text;
  c.classList.toggle('streaming', streaming);
  $('cam-caption').textContent = text;
}

function answerItem(id, question) {
  let li = state.answers.get(id);
  if (!li) {
    li = document.createElement('li');
    li.innerHTML = '<span class="q"></span> <span class="a"></span>';
    li.querySelector('.q').textContent = question ?? '';
    $('answers').prepend(li);
    state.answers.set(id, li);
  }
  return li;
}

function handle(type, d) {
  switch (type) {
    case 'delta':
      if (d.kind === 'answer') { const a = answerItem(d.question_id).querySelector('.a'); a.textContent = (a.textContent + d.text).trimStart(); break; }
      if (d.segment !== state.segment) { state.segment = d.segment; state.text = ''; }
      state.text += d.text;
      showCaption(state.text.trim(), true);
      break;
    case 'segment': {
      showCaption(d.text, false);
      const li = document.createElement('li');
      li.textContent = `[${d.time.toFixed(1)} s] ${d.text}`;
      $('history').prepend(li);
      while ($('history').children.length > 30) $('history').lastChild.remove();
      drawHeatmap(d.kept_grid);
      $('kept').textContent = `${d.kept_tokens} of ${d.visual_tokens} visual tokens kept${d.k ? ` (k=${d.k})` : ''}; glass→caption ${d.latency_ms.toFixed(0)} ms`;
      break;
    }
    case 'question': answerItem(d.question_id, d.text); break;
    case 'answer': answerItem(d.question_id, d.question).querySelector('.a').textContent = d.text; break;
    case 'stats': showStats(d); break;
    case 'state': $('hud-state').textContent = d.state; $('hud-source').textContent = d.source_status; if (d.error) status(d.error); break;
    case 'gap': status(`${d.missed} events were dropped before this page caught up`); break;
    case 'end': $('hud-state').textContent = `ended (${d.reason})`; state.events?.close(); break;
    case 'error': status(d.message); break;
  }
}

function showStats(s) {
  $('hud-fps').textContent = s.fps.toFixed(1);
  $('hud-rate').textContent = s.caption_hz.toFixed(2);
  $('hud-latency').textContent = `${s.glass_to_caption_ms.p50.toFixed(0)} / ${s.glass_to_caption_ms.p95.toFixed(0)} ms`;
  $('hud-budget').textContent = s.frame_budget_ms == null ? `off · ${s.read_ms.toFixed(0)} ms` : `${s.frame_budget_ms.toFixed(0)} · ${s.read_ms.toFixed(0)} ms · ${s.reads_over_budget} of ${s.frames_read} over`;
  $('hud-governor').textContent = s.governor.level ?? 'unpruned';
  $('hud-dropped').textContent = `${s.dropped_frames} · ${s.skipped_frames.unchanged + s.skipped_frames.over_budget}`;
}

function drawHeatmap(grid) {
  const canvas = $('heatmap'), g = canvas.getContext('2d');
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (!grid) return;
  const cw = canvas.width / grid.width, ch = canvas.height / grid.height;
  grid.cells.forEach((v, i) => {
    // kept share 0 → dark blue, 1 → warm yellow
    g.fillStyle = `hsl(${240 - 190 * v}, 80%, ${18 + 42 * v}%)`;
    g.fillRect((i % grid.width) * cw, Math.floor(i / grid.width) * ch, Math.ceil(cw), Math.ceil(ch));
  });
}

$('start-file').addEventListener('click', startFile);
$('start-cam').addEventListener('click', startCam);
$('stop').addEventListener('click', stop);
$('ask').addEventListener('submit', async e => {
  e.preventDefault();
  const text = $('question').value.trim();
  if (!text || !state.id) return;
  try {
    const q = await api(`/v1/streams/${state.id}/questions`, { method: 'POST', body: JSON.stringify({ text }) });
    answerItem(q.question_id, text);
    $('question').value = '';
  } catch (err) { status(`cannot ask: ${err.message}`); }
});
fetch('/page.json').then(r => r.json()).then(c => { page.apiKeyRequired = c.api_key_required; loadFiles(); });
