// A websocket that reconnects with backoff: the tutor page's /ws/tutor/ and the teachers' live view
// (/ws/teacher/live/). Wire protocol: docs/internal-contracts.md.

import { REFUSAL_CODES } from "./protocol.js";

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];
const BACKOFF_MAX_MS = 15000;
// Mic audio is dropped rather than queued without bound while the network stalls.
const MAX_BUFFERED_BYTES = 512 * 1024;

/** The ws:// or wss:// URL of `path` on this page's host. */
export function socketUrl(path) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path}`;
}

/**
 * Callbacks (all optional):
 *   onOpen({reconnected}), onEvent(obj), onAudio(ArrayBuffer),
 *   onClose({code, fatal, willRetry, delayMs, attempt})
 * `refusalCodes`: close codes after which it does not reconnect (`fatal` in onClose).
 */
export class ReconnectingSocket {
  constructor(url, callbacks, { refusalCodes = REFUSAL_CODES } = {}) {
    this.url = url;
    this.cb = callbacks;
    this.refusalCodes = new Set(refusalCodes);
    this.ws = null;
    this.attempt = 0;
    this.opened = 0; // connections opened so far
    this.retryTimer = null;
    this.shouldReconnect = true;
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.opened += 1;
      this.cb.onOpen?.({ reconnected: this.opened > 1 });
    };
    ws.onmessage = (event) => {
      if (typeof event.data === "string") {
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          console.warn("parla: ignoring a non-JSON text frame");
          return;
        }
        this.cb.onEvent?.(msg);
      } else {
        this.cb.onAudio?.(event.data);
      }
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return; // an old socket we already replaced
      this.ws = null;
      const fatal = this.refusalCodes.has(event.code);
      const willRetry = this.shouldReconnect && !fatal;
      let delayMs = 0;
      if (willRetry) {
        const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
        delayMs = Math.min(BACKOFF_MAX_MS, base + Math.random() * base * 0.3);
        this.attempt += 1;
        this.retryTimer = setTimeout(() => this.connect(), delayMs);
      }
      this.cb.onClose?.({ code: event.code, fatal, willRetry, delayMs, attempt: this.attempt });
    };
  }

  /** Open, opening, or waiting to reconnect. */
  get active() {
    return this.ws !== null || this.retryTimer !== null;
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  send(obj) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  sendBinary(buffer) {
    if (!this.isOpen || this.ws.bufferedAmount > MAX_BUFFERED_BYTES) return false;
    this.ws.send(buffer);
    return true;
  }

  /** Stop reconnecting from now on (session ended, or a fatal close); close if still open. */
  close(code = 1000) {
    this.shouldReconnect = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(code);
  }

  /** Replace the connection with a fresh one now (a new session after one ended). */
  reconnectNow() {
    this.shouldReconnect = true;
    this.attempt = 0;
    const old = this.ws;
    this.ws = null; // its close event is ignored from now on
    if (old && old.readyState <= WebSocket.OPEN) old.close(1000);
    this.connect();
  }
}
