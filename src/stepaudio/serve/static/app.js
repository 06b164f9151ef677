// The voice-chat page: microphone -> /v1/realtime (OpenAI Realtime events, pcm16 at the audio
// context's own rate, declared in session.update so the browser never resamples), the streamed
// answer -> speakers, transcripts of both sides, barge-in, voice and tag pickers, latency per turn.

const $ = (id) => document.getElementById(id);
const FRAME_SECONDS = 0.04;

const page = {
  ws: null,
  ctx: null,
  mic: null,
  player: null,
  responding: null, // id of the response being generated
  speechEndedAt: null, // performance.now() at speech_stopped (or when a typed message left)
  awaitingFirstAudio: false,
  playedSamples: 0,
  turns: {}, // item or response id -> its transcript element
};
window.stepaudio = page; // for the browser test and for curious users

// --- pcm16 <-> float ---------------------------------------------------------------------------

function floatToBase64Pcm16(samples) {
  const pcm = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32767)));
  const bytes = new Uint8Array(pcm.buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function base64Pcm16ToFloat(data) {
  const text = atob(data);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  const pcm = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
  const samples = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
  return samples;
}

// --- server settings: voices, tags, key --------------------------------------------------------

function authHeaders() {
  const key = $("key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function loadPickers() {
  const health = await (await fetch("/health")).json();
  $("key-label").hidden = !health.api_key_required;
  const response = await fetch("/v1/voices", { headers: authHeaders() });
  if (!response.ok) return setStatus("enter the API key", "error");
  const { voices, default: chosen, tags } = await response.json();
  $("voice").replaceChildren(...voices.map((name) => new Option(name, name, false, name === chosen)));
  $("tags").replaceChildren(
    ...Object.entries(tags).map(([group, names]) => {
      const select = document.createElement("select");
      select.dataset.group = group;
      select.append(new Option(`${group}: none`, ""), ...names.map((name) => new Option(name, name)));
      select.onchange = sendSettings;
      return select;
    }),
  );
}

function chosenTags() {
  return [...$("tags").querySelectorAll("select")].map((s) => s.value).filter(Boolean);
}

function sendSettings() {
  if (!page.ws || page.ws.readyState !== WebSocket.OPEN) return;
  const rate = page.ctx.sampleRate;
  send({
    type: "session.update",
    session: {
      audio: {
        input: { format: { type: "audio/pcm", rate } },
        output: { format: { type: "audio/pcm", rate }, voice: $("voice").value || null },
      },
    },
  });
  const tags = chosenTags();
  if (tags.length || page.sentTags) send({ type: "session.update", session: { tags } });
  page.sentTags = tags.length > 0;
}

// --- connection --------------------------------------------------------------------------------

function send(event) {
  if (page.ws && page.ws.readyState === WebSocket.OPEN) page.ws.send(JSON.stringify(event));
}

function setStatus(text, state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

async function start() {
  $("connect").disabled = true;
  try {
    page.ctx = new AudioContext();
    await page.ctx.audioWorklet.addModule("worklets.js");
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    page.mic = stream;
    const capture = new AudioWorkletNode(page.ctx, "capture", {
      numberOfOutputs: 0,
      processorOptions: { frame: Math.round(page.ctx.sampleRate * FRAME_SECONDS) },
    });
    page.ctx.createMediaStreamSource(stream).connect(capture);
    page.player = new AudioWorkletNode(page.ctx, "player", { outputChannelCount: [1] });
    page.player.connect(page.ctx.destination);
    page.player.port.onmessage = onPlayer;
    capture.port.onmessage = ({ data }) => {
      $("level").value = Math.min(1, data.level * 5);
      send({ type: "input_audio_buffer.append", audio: floatToBase64Pcm16(data.samples) });
    };
    await page.ctx.resume();
    openSocket();
  } catch (error) {
    setStatus(`cannot start: ${error.message}`, "error");
    $("connect").disabled = false;
  }
}

function openSocket() {
  const key = $("key").value.trim();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/realtime`;
  page.ws = new WebSocket(url, ["realtime", ...(key ? [`openai-insecure-api-key.${key}`] : [])]);
  setStatus("connecting…", "connecting");
  page.ws.onopen = () => {
    sendSettings();
    setStatus("listening", "listening");
    $("text").disabled = $("send").disabled = false;
    $("connect").textContent = "Stop";
    $("connect").disabled = false;
    $("connect").onclick = stop;
  };
  page.ws.onmessage = ({ data }) => onEvent(JSON.parse(data));
  page.ws.onclose = ({ code, reason }) => {
    setStatus(code === 1000 ? "disconnected" : `disconnected (${code}${reason ? ": " + reason : ""})`, "idle");
    $("text").disabled = $("send").disabled = true;
    $("connect").textContent = "Start talking";
    $("connect").disabled = false;
    $("connect").onclick = start;
    stopAudio();
  };
}

function stop() {
  if (page.ws) page.ws.close(1000);
}

function stopAudio() {
  if (page.mic) page.mic.getTracks().forEach((track) => track.stop());
  if (page.ctx) page.ctx.close();
  page.mic = page.ctx = page.player = null;
}

// --- server events -----------------------------------------------------------------------------

function turn(id, who) {
  if (!page.turns[id]) {
    const element = document.createElement("div");
    element.className = `turn ${who}`;
    element.dataset.id = id;
    element.innerHTML = '<span class="text"></span><span class="note"></span>';
    $("log").append(element);
    element.scrollIntoView({ block: "end" });
    page.turns[id] = element;
  }
  return page.turns[id];
}

function onEvent(event) {
  switch (event.type) {
    case "input_audio_buffer.speech_started":
      setStatus("hearing you", "hearing");
      if (page.responding) send({ type: "response.cancel" }); // barge-in: stop generating...
      page.player?.port.postMessage({ type: "clear" }); // ...and playing, then say how much was heard
      break;
    case "input_audio_buffer.speech_stopped":
      page.speechEndedAt = performance.now();
      page.awaitingFirstAudio = true;
      setStatus("thinking", "thinking");
      break;
    case "conversation.item.input_audio_transcription.delta":
      turn(event.item_id, "user").querySelector(".text").textContent += event.delta;
      break;
    case "conversation.item.input_audio_transcription.completed":
      turn(event.item_id, "user").querySelector(".text").textContent = event.transcript;
      break;
    case "response.created":
      page.responding = event.response.id;
      turn(event.response.id, "assistant");
      break;
    case "response.output_text.delta":
      turn(event.response_id, "assistant").querySelector(".text").textContent += event.delta;
      break;
    case "response.output_audio.delta":
      onAudio(event);
      break;
    case "response.done": {
      const element = turn(event.response.id, "assistant");
      if (event.response.status !== "completed") element.classList.add(event.response.status);
      if (page.responding === event.response.id) page.responding = null;
      if ($("status").dataset.state !== "speaking") setStatus("listening", "listening"); // else once played out
      break;
    }
    case "error":
      showError(event.error);
      break;
  }
}

function onAudio(event) {
  if (page.awaitingFirstAudio) {
    const ms = Math.round(performance.now() - page.speechEndedAt);
    page.awaitingFirstAudio = false;
    $("latency").textContent = `${ms} ms`;
    turn(event.response_id, "assistant").querySelector(".note").textContent = `first audio after ${ms} ms`;
  }
  setStatus("speaking", "speaking");
  const samples = base64Pcm16ToFloat(event.delta);
  page.player?.port.postMessage({ type: "push", item: event.item_id, samples }, [samples.buffer]);
}

function onPlayer({ data }) {
  if (data.type === "progress") {
    page.playedSamples = data.total;
    if (!data.queued && !page.responding && $("status").dataset.state === "speaking") setStatus("listening", "listening");
    $("played").textContent = (data.total / page.ctx.sampleRate).toFixed(1);
  } else if (data.type === "cleared" && data.item) {
    const audio_end_ms = Math.round((1000 * data.played) / page.ctx.sampleRate);
    send({ type: "conversation.item.truncate", item_id: data.item, content_index: 0, audio_end_ms });
  }
}

function showError(error) {
  const element = document.createElement("div");
  element.className = "turn error";
  element.textContent = error.message;
  $("log").append(element);
}

// --- typed messages ----------------------------------------------------------------------------

$("typed").onsubmit = (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  const id = `typed-${Date.now()}`;
  turn(id, "user").querySelector(".text").textContent = text;
  if (page.responding) send({ type: "response.cancel" });
  page.player?.port.postMessage({ type: "clear" });
  send({ type: "conversation.item.create", item: { type: "message", role: "user", content: [{ type: "input_text", text }] } });
  send({ type: "response.create" });
  page.speechEndedAt = performance.now();
  page.awaitingFirstAudio = true;
};

$("voice").onchange = sendSettings;
$("key").onchange = loadPickers;
$("connect").onclick = start;
loadPickers().catch((error) => setStatus(`server not reachable: ${error.message}`, "error"));
