// kamevoice browser page: microphone -> /api/chat (raw 16-bit PCM, 24 kHz) -> scheduled playback,
// plus live panels for the user transcript, the oracle, the front-end's words and latency figures.
"use strict";

const RATE = 24000;
const FRAME = 1920; // 80 ms at 24 kHz, the model's frame
const KIND = { HANDSHAKE: 0x00, AUDIO: 0x01, TEXT: 0x02, METADATA: 0x04, ERROR: 0x05, PING: 0x06, PCM16: 0x11 };
const PLAYBACK_LEAD_S = 0.12; // scheduling margin against network jitter

const $ = (id) => document.getElementById(id);

// Everything about the current conversation; also readable by tests as window.kame.
const kame = {
  ws: null,
  capture: null,
  playback: null,
  stream: null,
  pending: new Float32Array(0),
  nextPlay: 0,
  stats: { sent: 0, received: 0, played: 0, handshake: false, error: null, events: 0 },
  transcript: [],
};
window.kame = kame;

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function showCounts() {
  $("frames-sent").textContent = kame.stats.sent;
  $("frames-received").textContent = kame.stats.received;
  $("frames-played").textContent = kame.stats.played;
  if (kame.playback) {
    const queued = Math.max(0, kame.nextPlay - kame.playback.currentTime);
    $("queue").textContent = `${(queued * 1000).toFixed(0)} ms`;
  }
}

function chatUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // JSON events (0x04) are opt-in: Kyutai's own clients do not know them.
  const params = new URLSearchParams({ audio: "pcm16", events: "1" });
  const token = new URLSearchParams(location.search).get("token");
  if (token) params.set("token", token);
  return `${scheme}://${location.host}/api/chat?${params}`;
}

// -- sending -------------------------------------------------------------------------------------

function sendSamples(samples) {
  const merged = new Float32Array(kame.pending.length + samples.length);
  merged.set(kame.pending);
  merged.set(samples, kame.pending.length);
  let offset = 0;
  while (merged.length - offset >= FRAME) {
    sendFrame(merged.subarray(offset, offset + FRAME));
    offset += FRAME;
  }
  kame.pending = merged.slice(offset);
}

function sendFrame(frame) {
  if (!kame.ws || kame.ws.readyState !== WebSocket.OPEN || !kame.stats.handshake) return;
  const buf = new ArrayBuffer(1 + frame.length * 2);
  const view = new DataView(buf);
  view.setUint8(0, KIND.PCM16);
  for (let i = 0; i < frame.length; i++) {
    const s = Math.max(-1, Math.min(1, frame[i]));
    view.setInt16(1 + 2 * i, Math.round(s * 32767), true);
  }
  kame.ws.send(buf);
  kame.stats.sent += 1;
}

// -- receiving -----------------------------------------------------------------------------------

function playPcm16(payload) {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const n = payload.byteLength >> 1;
  if (!n || !kame.playback) return;
  const buffer = kame.playback.createBuffer(1, n, RATE);
  const data = buffer.getChannelData(0);
  for (let i = 0; i < n; i++) data[i] = view.getInt16(2 * i, true) / 32767;
  const source = kame.playback.createBufferSource();
  source.buffer = buffer;
  source.connect(kame.playback.destination);
  const now = kame.playback.currentTime;
  if (kame.nextPlay < now + 0.02) kame.nextPlay = now + PLAYBACK_LEAD_S; // underflow: start over
  source.onended = () => {
    kame.stats.played += 1;
    showCounts();
  };
  source.start(kame.nextPlay);
  kame.nextPlay += buffer.duration;
  kame.stats.received += 1;
}

function onEvent(event) {
  kame.stats.events += 1;
  switch (event.kind) {
    case EV.STT_PARTIAL:
      $("partial").textContent = event.text;
      $("stt-lag").textContent = `${(event.lag_s * 1000).toFixed(0)} ms`;
      break;
    case EV.STT_FINAL: {
      $("partial").textContent = "";
      if (event.text) {
        kame.transcript.push(event.text);
        const li = document.createElement("li");
        li.textContent = event.text;
        $("transcript").appendChild(li);
      }
      $("stt-lag").textContent = `${(event.lag_s * 1000).toFixed(0)} ms`;
      break;
    }
    case EV.ORACLE_TEXT:
      $("oracle").textContent = event.text;
      break;
    case EV.ORACLE_UNAVAILABLE:
      $("oracle").textContent = "(back-end unavailable)";
      break;
    case EV.LLM_FIRST_TOKEN:
      $("llm-first-token").textContent = `${(event.from_change_s * 1000).toFixed(0)} ms`;
      break;
    case EV.FRAME_STATS:
      $("step-ms").textContent = `${event.p50_ms} / ${event.p99_ms} ms`;
      $("runs").textContent = `${event.overruns} / ${event.underruns}`;
      break;
    default:
      break;
  }
}

function onMessage(msg) {
  const bytes = new Uint8Array(msg.data);
  if (!bytes.length) return;
  const payload = bytes.subarray(1);
  switch (bytes[0]) {
    case KIND.HANDSHAKE:
      kame.stats.handshake = true;
      setStatus("connected: speak");
      break;
    case KIND.PCM16:
      playPcm16(payload);
      break;
    case KIND.TEXT:
      $("words").textContent += new TextDecoder().decode(payload);
      break;
    case KIND.METADATA:
      onEvent(JSON.parse(new TextDecoder().decode(payload)));
      break;
    case KIND.ERROR:
      kame.stats.error = new TextDecoder().decode(payload);
      setStatus(`server: ${kame.stats.error}`, true);
      break;
    default:
      break;
  }
  showCounts();
}

// -- start / stop --------------------------------------------------------------------------------

// Event kinds, as the server declares them (kamevoice.runtime.messages): fetched, never retyped.
let EV = {};

async function start() {
  EV = await (await fetch("api/event-kinds")).json();
  $("start").disabled = true;
  setStatus("starting microphone…");
  try {
    kame.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
    });
    kame.capture = new AudioContext();
    if (kame.playback) kame.playback.close(); // the previous conversation's queued audio is dropped
    kame.playback = new AudioContext({ sampleRate: RATE });
    kame.nextPlay = 0;
    kame.pending = new Float32Array(0);
    kame.stats = { sent: 0, received: 0, played: 0, handshake: false, error: null, events: 0 };
    await kame.capture.audioWorklet.addModule("/static/capture-worklet.js");
    const source = kame.capture.createMediaStreamSource(kame.stream);
    const node = new AudioWorkletNode(kame.capture, "kame-capture");
    node.port.onmessage = (e) => sendSamples(e.data);
    source.connect(node);
    // The worklet must be pulled by the graph; a muted gain keeps the microphone out of the speakers.
    const mute = kame.capture.createGain();
    mute.gain.value = 0;
    node.connect(mute).connect(kame.capture.destination);
  } catch (err) {
    setStatus(`microphone: ${err.message || err}`, true);
    $("start").disabled = false;
    return;
  }
  setStatus("connecting…");
  const ws = new WebSocket(chatUrl());
  ws.binaryType = "arraybuffer";
  ws.onmessage = onMessage;
  ws.onclose = (e) => {
    if (!kame.stats.handshake) {
      setStatus("refused: the server is busy or this page may not connect (see /health)", true);
    } else if (!kame.stats.error) {
      setStatus(`disconnected (${e.code})`);
    }
    stop();
  };
  kame.ws = ws;
  $("stop").disabled = false;
}

function stop() {
  if (kame.ws && kame.ws.readyState <= WebSocket.OPEN) kame.ws.close(1000);
  kame.ws = null;
  if (kame.stream) kame.stream.getTracks().forEach((t) => t.stop());
  kame.stream = null;
  if (kame.capture) kame.capture.close();
  kame.capture = null;
  $("start").disabled = false;
  $("stop").disabled = true;
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", () => {
  stop();
  setStatus("stopped");
});
