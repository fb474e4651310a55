// Microphone capture on the audio thread: mono mix -> resample to 24 kHz -> PCM16 LE frames
// (the format is in protocol.js).
//
// Posts to the main thread:
//   {type: "frame", pcm: ArrayBuffer}   FRAME_SAMPLES samples of PCM16 (100 ms = 4800 bytes)
//   {type: "level", rms: 0..1, peak: 0..1}  about 20 times a second, for the input meter
// Accepts: {type: "reset"} (drops the partial frame, e.g. when a session starts).
//
// `sampleRate` is the AudioContext's rate (a global of AudioWorkletGlobalScope). Parla asks for a
// 24 kHz context, so usually the resampler is a copy; where the browser refuses that rate we
// resample here with linear interpolation, which is plenty for speech going to a speech model.
// A worklet is always loaded as an ES module (`audioWorklet.addModule`), so it imports like one.

import { FRAME_SAMPLES, WIRE_RATE } from "./protocol.js";

const LEVEL_INTERVAL_S = 0.05;

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / WIRE_RATE; // input samples per output sample
    this.pos = 0; // fractional read position into the current block (may be negative: see `prev`)
    this.prev = 0; // last input sample of the previous block, for interpolation across blocks
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
    this.levelSum = 0;
    this.levelPeak = 0;
    this.levelCount = 0;
    this.levelEvery = Math.max(1, Math.round(LEVEL_INTERVAL_S * sampleRate));
    this.port.onmessage = (event) => {
      if (event.data && event.data.type === "reset") {
        this.filled = 0;
      }
    };
  }

  push(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.frame[this.filled++] = s < 0 ? Math.round(s * 0x8000) : Math.round(s * 0x7fff);
    if (this.filled === FRAME_SAMPLES) {
      const pcm = this.frame.buffer;
      this.port.postMessage({ type: "frame", pcm }, [pcm]);
      this.frame = new Int16Array(FRAME_SAMPLES);
      this.filled = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0 || input[0].length === 0) {
      return true; // no source connected (yet): keep the node alive
    }
    const n = input[0].length;
    const mono = input.length === 1 ? input[0] : new Float32Array(n);
    if (input.length > 1) {
      for (let c = 0; c < input.length; c++) {
        const ch = input[c];
        for (let i = 0; i < n; i++) mono[i] += ch[i] / input.length;
      }
    }

    for (let i = 0; i < n; i++) {
      const v = mono[i];
      this.levelSum += v * v;
      const a = v < 0 ? -v : v;
      if (a > this.levelPeak) this.levelPeak = a;
      if (++this.levelCount >= this.levelEvery) {
        this.port.postMessage({
          type: "level",
          rms: Math.sqrt(this.levelSum / this.levelCount),
          peak: this.levelPeak,
        });
        this.levelSum = 0;
        this.levelPeak = 0;
        this.levelCount = 0;
      }
    }

    if (this.step === 1) {
      for (let i = 0; i < n; i++) this.push(mono[i]);
      return true;
    }
    // Linear interpolation; position -1 means `prev` (the last sample of the previous block).
    let pos = this.pos;
    while (pos < n - 1) {
      const i = Math.floor(pos);
      const frac = pos - i;
      const a = i < 0 ? this.prev : mono[i];
      const b = mono[i + 1];
      this.push(a + (b - a) * frac);
      pos += this.step;
    }
    this.pos = pos - n; // continue in the next block, relative to its first sample
    this.prev = mono[n - 1];
    return true;
  }
}

registerProcessor("parla-capture", CaptureProcessor);
