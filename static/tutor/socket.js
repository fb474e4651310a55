// The /ws/tutor/ websocket with reconnect-and-backoff (wire protocol: docs/internal-contracts.md).

// Close codes after which reconnecting cannot help (tutor/auth.py, tutor/consumers.py).
export const CLOSE_NOT_AUTHENTICATED = 4401;
export const CLOSE_NOT_A_LEARNER = 4403;
export const CLOSE_SUPERSEDED = 4409; // opened in another tab: reconnecting would take it back
const FATAL_CODES = new Set([CLOSE_NOT_AUTHENTICATED, CLOSE_NOT_A_LEARNER, CLOSE_SUPERSEDED]);

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];
const BACKOFF_MAX_MS = 15000;
// Mic audio is dropped rather than queued without bound while the network stalls.
const MAX_BUFFERED_BYTES = 512 * 1024;

/**
 * Callbacks (all optional):
 *   onOpen(), onEvent(obj), onAudio(ArrayBuffer),
 *   onClose({code, fatal, willRetry, delayMs, attempt})
 */
export class TutorSocket {
  constructor(url, callbacks) {
    this.url = url;
    this.cb = callbacks;
    this.ws = null;
    this.attempt = 0;
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
      this.cb.onOpen?.();
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
      const fatal = FATAL_CODES.has(event.code);
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
