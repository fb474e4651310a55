// Audio for the tutor page: one AudioContext (24 kHz where the browser allows it), a capture
// worklet turning the microphone into PCM16 frames and a playback worklet with a flushable
// jitter buffer. The worklets are in capture-worklet.js and playback-worklet.js.

import { PLAYBACK_END, PLAYBACK_PROGRESS, PLAYBACK_START, WIRE_RATE } from "./protocol.js";

const FLUSH_REPLY_TIMEOUT_MS = 250;

/** Why the microphone is unavailable, as a code the page turns into a message. */
export class MicrophoneError extends Error {
  constructor(code, cause) {
    super(code);
    this.code = code; // "denied" | "not-found" | "in-use" | "insecure" | "unsupported" | "failed"
    this.cause = cause;
  }
}

function micErrorCode(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return "denied";
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return "not-found";
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return "in-use";
    default:
      return "failed";
  }
}

/**
 * Callbacks (all optional):
 *   onFrame(ArrayBuffer)                 100 ms of 24 kHz PCM16 from the microphone
 *   onLevel(rms, peak)                   input level, ~20 times a second
 *   onPlayed({itemId, playedMs, kind})   an assistant item started, progressed or ended playing
 *                                        (kind: PLAYBACK_START / _PROGRESS / _END of protocol.js)
 *   onPlaying(bool)                      assistant audio started / stopped coming out
 */
export class AudioEngine {
  constructor({ captureUrl, playbackUrl }, callbacks) {
    this.urls = { captureUrl, playbackUrl };
    this.cb = callbacks;
    this.ctx = null;
    this.captureCtx = null; // same as ctx unless the browser cannot mix rates (see startMicrophone)
    this.playback = null;
    this.capture = null;
    this.stream = null;
    this.source = null;
    this.flushWaiters = new Map(); // requestId -> resolve
    this.ready = null;
  }

  get sampleRate() {
    return this.ctx ? this.ctx.sampleRate : null;
  }

  get running() {
    return this.ctx !== null && this.ctx.state === "running";
  }

  /**
   * Create and resume the AudioContext. Call it from the Start button's click handler: browsers
   * only let a context start playing in response to a user gesture (autoplay policy). Idempotent.
   */
  init() {
    if (this.ready) {
      this.ctx.resume().catch(() => {});
      return this.ready;
    }
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx || !("audioWorklet" in Ctx.prototype)) {
      this.ready = Promise.reject(new Error("This browser cannot run AudioWorklets."));
      return this.ready;
    }
    try {
      this.ctx = new Ctx({ sampleRate: WIRE_RATE, latencyHint: "interactive" });
    } catch {
      this.ctx = new Ctx({ latencyHint: "interactive" }); // the worklets resample instead
    }
    // Synchronously inside the gesture: resume() counts as user-initiated here.
    const resumed = this.ctx.resume().catch(() => {});
    this.ready = (async () => {
      await this.ctx.audioWorklet.addModule(this.urls.playbackUrl);
      this.playback = new AudioWorkletNode(this.ctx, "parla-playback", {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [1],
      });
      this.playback.port.onmessage = (event) => this.onPlaybackMessage(event.data);
      this.playback.connect(this.ctx.destination);
      await resumed;
    })();
    return this.ready;
  }

  onPlaybackMessage(msg) {
    switch (msg.type) {
      case "started":
        this.cb.onPlayed?.({ itemId: msg.itemId, playedMs: 0, kind: PLAYBACK_START });
        break;
      case "progress":
        this.cb.onPlayed?.({ itemId: msg.itemId, playedMs: msg.playedMs, kind: PLAYBACK_PROGRESS });
        break;
      case "done":
        this.cb.onPlayed?.({ itemId: msg.itemId, playedMs: msg.playedMs, kind: PLAYBACK_END });
        break;
      case "activity":
        this.cb.onPlaying?.(msg.playing);
        break;
      case "flushed": {
        const resolve = this.flushWaiters.get(msg.requestId);
        if (resolve) {
          this.flushWaiters.delete(msg.requestId);
          resolve({ itemId: msg.itemId, playedMs: msg.playedMs, dropped: msg.dropped });
        }
        break;
      }
    }
  }

  /** Ask for the microphone and start capturing. Throws MicrophoneError. */
  async startMicrophone() {
    await this.init();
    if (this.stream) return;
    if (!window.isSecureContext) throw new MicrophoneError("insecure");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new MicrophoneError("unsupported");
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      throw new MicrophoneError(micErrorCode(err), err);
    }
    this.stream = stream;
    try {
      this.source = this.ctx.createMediaStreamSource(stream);
      this.captureCtx = this.ctx;
    } catch {
      // Some browsers refuse to connect a microphone to a context whose rate differs from the
      // device's: capture in a context at the default rate; the capture worklet resamples.
      this.captureCtx = new (window.AudioContext || window.webkitAudioContext)();
      await this.captureCtx.resume().catch(() => {});
      this.source = this.captureCtx.createMediaStreamSource(stream);
    }
    const ctx = this.captureCtx;
    await ctx.audioWorklet.addModule(this.urls.captureUrl);
    this.capture = new AudioWorkletNode(ctx, "parla-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      channelCount: 1,
      channelCountMode: "explicit",
      channelInterpretation: "speakers",
    });
    this.capture.port.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === "frame") this.cb.onFrame?.(msg.pcm);
      else if (msg.type === "level") this.cb.onLevel?.(msg.rms, msg.peak);
    };
    this.source.connect(this.capture);
    // A silent path to the destination keeps the node pulled by the render graph in every browser.
    const mute = new GainNode(ctx, { gain: 0 });
    this.capture.connect(mute).connect(ctx.destination);
    for (const track of stream.getAudioTracks()) {
      track.addEventListener("ended", () => this.stopMicrophone());
    }
  }

  get microphoneOn() {
    return this.stream !== null;
  }

  /** Release the microphone (the browser's recording indicator goes off). */
  stopMicrophone() {
    if (this.stream) {
      for (const track of this.stream.getTracks()) track.stop();
      this.stream = null;
    }
    if (this.source) this.source.disconnect();
    if (this.capture) {
      this.capture.port.onmessage = null;
      this.capture.disconnect();
    }
    this.source = null;
    this.capture = null;
    if (this.captureCtx && this.captureCtx !== this.ctx) this.captureCtx.close().catch(() => {});
    this.captureCtx = null;
    this.cb.onLevel?.(0, 0);
  }

  /** Queue PCM16 24 kHz audio of `itemId` (the buffer is transferred to the audio thread). */
  play(itemId, pcm) {
    if (!this.playback) return false;
    this.playback.port.postMessage({ type: "audio", itemId, pcm }, [pcm]);
    return true;
  }

  /** No more audio will come for `itemId`: the worklet reports it done once it has played out. */
  end(itemId) {
    if (this.playback) this.playback.port.postMessage({ type: "end", itemId });
  }

  /**
   * Drop all queued audio now. Resolves {itemId, playedMs, dropped} for the item that was playing, or null
   * when there is no playback (never started) or the audio thread did not answer in time.
   */
  flush(requestId) {
    if (!this.playback) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.flushWaiters.delete(requestId);
        resolve(null);
      }, FLUSH_REPLY_TIMEOUT_MS);
      this.flushWaiters.set(requestId, (result) => {
        clearTimeout(timer);
        resolve(result);
      });
      this.playback.port.postMessage({ type: "flush", requestId });
    });
  }
}
