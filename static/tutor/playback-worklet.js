// Assistant audio playback on the audio thread: a jitter buffer of PCM16 24 kHz chunks tagged with
// the item they belong to, that can be flushed at once and knows how much of each item it played.
//
// Accepts from the main thread:
//   {type: "audio", itemId, pcm: ArrayBuffer}   PCM16 LE mono 24 kHz, appended to the queue
//   {type: "end", itemId}                        the item has no more audio (from `audio.end`)
//   {type: "flush", requestId}                   drop everything queued, now
// Posts:
//   {type: "started", itemId}                    an item's first samples went to the output
//   {type: "progress", itemId, playedMs}         every ~500 ms while an item plays
//   {type: "done", itemId, playedMs}             an item played to its end
//   {type: "flushed", requestId, itemId, playedMs, dropped}  reply to "flush": the item that was
//                                                playing (or, if none had started, the first one
//                                                queued); `dropped`: queued audio was thrown away
//   {type: "activity", playing: bool}            playback started / ran dry (for the UI)
//
// "Played" counts samples actually handed to the audio output, so it is what the learner heard,
// not what the server sent: the handover truncates the tutor's item at exactly this point.

import { WIRE_RATE } from "./protocol.js"; // worklets are ES modules (`audioWorklet.addModule`)

const PREBUFFER_S = 0.08; // wait for this much audio before (re)starting, to ride out jitter
const PROGRESS_S = 0.5;

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = WIRE_RATE / sampleRate; // source samples per output sample
    this.queue = []; // {itemId, data: Float32Array at `sampleRate`, offset} | {end: itemId}
    this.queued = 0; // output samples waiting in the queue
    this.played = new Map(); // itemId -> output samples played
    this.current = null; // item playing now or last played
    this.buffering = true;
    this.sinceProgress = 0;
    this.resampler = { itemId: null, pos: 0, prev: 0 };
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  onMessage(msg) {
    switch (msg.type) {
      case "audio":
        this.enqueue(msg.itemId, new Int16Array(msg.pcm));
        break;
      case "end":
        this.queue.push({ end: msg.itemId });
        break;
      case "flush":
        this.flush(msg.requestId);
        break;
    }
  }

  enqueue(itemId, pcm) {
    let data;
    if (this.step === 1) {
      data = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
    } else {
      data = this.resample(itemId, pcm);
    }
    if (data.length === 0) return;
    this.queue.push({ itemId, data, offset: 0 });
    this.queued += data.length;
    if (!this.played.has(itemId)) this.played.set(itemId, 0);
  }

  // Linear interpolation from 24 kHz to the context rate, continuous across the chunks of one item.
  resample(itemId, pcm) {
    const r = this.resampler;
    if (r.itemId !== itemId) {
      r.itemId = itemId;
      r.pos = 0;
      r.prev = 0;
    }
    const n = pcm.length;
    const out = [];
    let pos = r.pos;
    while (pos < n - 1) {
      const i = Math.floor(pos);
      const frac = pos - i;
      const a = i < 0 ? r.prev : pcm[i] / 32768;
      const b = pcm[i + 1] / 32768;
      out.push(a + (b - a) * frac);
      pos += this.step;
    }
    r.pos = pos - n;
    r.prev = n > 0 ? pcm[n - 1] / 32768 : r.prev;
    return Float32Array.from(out);
  }

  ms(itemId) {
    return Math.round(((this.played.get(itemId) || 0) * 1000) / sampleRate);
  }

  flush(requestId) {
    let itemId = this.current;
    if (itemId === null) {
      const first = this.queue.find((entry) => entry.itemId !== undefined);
      itemId = first ? first.itemId : null;
    }
    const dropped = this.queued > 0;
    this.queue = [];
    this.queued = 0;
    this.resampler.itemId = null;
    if (!this.buffering) this.port.postMessage({ type: "activity", playing: false });
    this.buffering = true;
    this.port.postMessage({
      type: "flushed",
      requestId,
      itemId,
      playedMs: itemId === null ? 0 : this.ms(itemId),
      dropped,
    });
  }

  process(inputs, outputs) {
    const output = outputs[0];
    const out = output[0];
    const frames = out.length;
    let written = 0;

    if (this.buffering) {
      const ready = this.queued >= PREBUFFER_S * sampleRate || this.queue.some((e) => e.end !== undefined);
      if (ready && this.queue.length > 0) {
        this.buffering = false;
        this.port.postMessage({ type: "activity", playing: true });
      }
    }

    while (!this.buffering && written < frames && this.queue.length > 0) {
      const head = this.queue[0];
      if (head.end !== undefined) {
        this.queue.shift();
        this.port.postMessage({ type: "done", itemId: head.end, playedMs: this.ms(head.end) });
        continue;
      }
      if (head.itemId !== this.current) {
        this.current = head.itemId;
        this.sinceProgress = 0;
        if (this.played.get(head.itemId) === 0) this.port.postMessage({ type: "started", itemId: head.itemId });
      }
      const take = Math.min(frames - written, head.data.length - head.offset);
      out.set(head.data.subarray(head.offset, head.offset + take), written);
      head.offset += take;
      written += take;
      this.queued -= take;
      this.played.set(head.itemId, (this.played.get(head.itemId) || 0) + take);
      this.sinceProgress += take;
      if (head.offset >= head.data.length) this.queue.shift();
    }
    out.fill(0, written);
    for (let c = 1; c < output.length; c++) output[c].set(out);

    if (!this.buffering) {
      if (this.current !== null && this.sinceProgress >= PROGRESS_S * sampleRate) {
        this.sinceProgress = 0;
        this.port.postMessage({ type: "progress", itemId: this.current, playedMs: this.ms(this.current) });
      }
      // Ran dry (underrun or simply the end): wait for a fresh prebuffer before playing again.
      if (this.queue.length === 0) {
        this.buffering = true;
        this.port.postMessage({ type: "activity", playing: false });
      }
    }
    return true;
  }
}

registerProcessor("parla-playback", PlaybackProcessor);
