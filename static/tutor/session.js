// The tutor page: wires the /ws/tutor/ socket, the audio engine and the view together.
// Wire protocol: docs/internal-contracts.md ("Browser wire protocol").

import { AudioEngine, MicrophoneError } from "./audio.js";
import { CLOSE_NOT_A_LEARNER, CLOSE_NOT_AUTHENTICATED, CLOSE_SUPERSEDED, TutorSocket } from "./socket.js";
import { SessionView } from "./ui.js";

// While the server is in these states the learner's microphone is not sent (the server freezes
// its input during grading and the summary anyway; this saves the bandwidth).
const MIC_PAUSED_STATES = new Set(["assessing", "summary", "ended"]);

const MIC_MESSAGES = {
  denied:
    "Microphone permission denied. Allow the microphone for this site in your browser's settings " +
    "and try again - or answer in writing below.",
  "not-found": "No microphone found. Connect one and try again - or answer in writing below.",
  "in-use": "The microphone is in use by another application. Close it and try again - or answer in writing below.",
  insecure: "The microphone only works on a secure (https) page. You can answer in writing below.",
  unsupported: "This browser cannot record audio. You can answer in writing below.",
  failed: "The microphone could not be started. Try again, or answer in writing below.",
};

class TutorPage {
  constructor(root) {
    this.root = root;
    this.view = new SessionView(root);
    this.levelNames = JSON.parse(document.getElementById("level-names").textContent);
    this.language = root.dataset.language || undefined;

    this.serverReady = false; // a `state` arrived on the current connection
    this.inSession = false; // session.start sent and the session has not ended
    this.ended = false; // the last session ended (no reconnecting after that)
    this.hadSession = false; // a session ran on this page: a new one starts with a clean slate
    this.socketUsed = false; // the current connection carried a session (the server allows one)
    this.interrupted = false; // the connection dropped during a session
    this.pendingStart = false; // Start pressed before the server was ready
    this.stopping = false;
    this.state = "idle";
    this.audioItem = null; // item_id of the assistant audio arriving now (from `audio.start`)
    this.flushedItems = new Set(); // audio of these items is dropped if any still arrives
    this.framesSent = 0;
    this.framesReceived = 0;
    this.wasConnected = false;
    this.fatal = false; // the server refused this page for good (login, account, another tab)

    this.audio = new AudioEngine(
      { captureUrl: root.dataset.captureUrl, playbackUrl: root.dataset.playbackUrl },
      {
        onFrame: (pcm) => this.onMicFrame(pcm),
        onLevel: (rms) => this.view.setMicLevel(rms),
        onPlayed: (report) => this.onPlayed(report),
        onPlaying: (playing) => (this.root.dataset.playing = playing ? "true" : "false"),
      },
    );
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    this.socket = new TutorSocket(`${scheme}//${window.location.host}${root.dataset.wsPath}`, {
      onOpen: () => this.onOpen(),
      onEvent: (msg) => this.onEvent(msg),
      onAudio: (buffer) => this.onAudio(buffer),
      onClose: (info) => this.onClose(info),
    });

    this.view.startButton.addEventListener("click", () => this.start());
    this.view.stopButton.addEventListener("click", () => this.stop());
    this.view.answerForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendAnswer();
    });
    this.view.answerText.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.sendAnswer();
      }
    });

    this.view.setConnection("connecting");
    this.view.setTurn("idle", { announce: false });
    this.render();
    this.socket.connect();
  }

  // -- controls ---------------------------------------------------------------------------------

  render() {
    const active = this.inSession && !this.stopping;
    this.view.setControls({
      canStart: !this.inSession && !this.pendingStart && !this.fatal,
      canStop: active && !MIC_PAUSED_STATES.has(this.state),
      canAnswer: active && this.socket.isOpen && !MIC_PAUSED_STATES.has(this.state),
      startLabel: this.hadSession && !this.inSession ? "Start a new session" : "Start",
    });
  }

  async start() {
    if (this.inSession || this.pendingStart || this.fatal) return;
    // Inside the click: the AudioContext may only start playing in response to a gesture.
    const audioReady = this.audio.init().then(
      () => true,
      (err) => {
        this.view.showNotice(`Audio is not available in this browser (${err.message}). You can answer in writing.`);
        return false;
      },
    );
    this.view.clearNotice();
    if (this.hadSession) this.resetForNewSession();
    this.pendingStart = true;
    this.render();
    this.view.setTurn("connecting");

    if (await audioReady) {
      await this.enableMicrophone();
      if (this.audio.ctx.state !== "running") {
        this.view.showNotice("Your browser is holding back the tutor's sound.", {
          kind: "info",
          action: { label: "Turn sound on", onClick: () => this.audio.ctx.resume().then(() => this.view.clearNotice()) },
        });
      }
    }
    // The server runs one session per connection: a new one after it needs a fresh connection.
    if (this.socketUsed || !this.socket.active) {
      this.serverReady = false;
      this.socket.reconnectNow(); // sendStart follows the first `state` of the new connection
    } else if (this.serverReady && this.socket.isOpen) {
      this.sendStart();
    } // else: connecting or reconnecting; sendStart follows the first `state`
  }

  async enableMicrophone() {
    try {
      await this.audio.startMicrophone();
      this.view.setMicState("on");
      this.root.dataset.mic = "on";
    } catch (err) {
      const code = err instanceof MicrophoneError ? err.code : "failed";
      this.root.dataset.mic = code;
      this.view.setMicState("off");
      const retry = code === "insecure" || code === "unsupported" ? null : {
        label: "Try the microphone again",
        onClick: async () => {
          this.view.clearNotice();
          await this.enableMicrophone();
        },
      };
      this.view.showNotice(MIC_MESSAGES[code] || MIC_MESSAGES.failed, { action: retry });
    }
  }

  sendStart() {
    this.pendingStart = false;
    const msg = { type: "session.start" };
    if (this.language) msg.language = this.language;
    if (!this.socket.send(msg)) {
      this.pendingStart = true; // the socket closed under us: start after reconnecting
      return;
    }
    this.inSession = true;
    this.hadSession = true;
    this.socketUsed = true;
    this.stopping = false;
    this.ended = false;
    this.interrupted = false;
    this.state = "connecting";
    this.render();
  }

  stop() {
    if (!this.inSession || this.stopping) return;
    this.stopping = true;
    this.socket.send({ type: "session.stop" });
    this.audio.stopMicrophone();
    this.view.setMicState("off");
    this.render();
  }

  sendAnswer() {
    const text = this.view.answerText.value.trim();
    if (!text || this.view.answerText.disabled) return;
    if (this.socket.send({ type: "answer.text", text })) {
      this.view.answerText.value = "";
    }
  }

  resetForNewSession() {
    this.view.transcript.replaceChildren();
    this.view.entries.clear();
    this.view.card.hidden = true;
    this.view.hideAssessing();
    this.view.setLevel("A1", null);
    this.flushedItems.clear();
    this.audioItem = null;
  }

  endSession() {
    this.inSession = false;
    this.stopping = false;
    this.pendingStart = false;
    this.ended = true;
    this.socket.shouldReconnect = false; // the server may close now: that is not a lost connection
    this.audio.stopMicrophone();
    this.view.setMicState("off");
    this.view.hideAssessing();
    this.render();
  }

  // -- socket -----------------------------------------------------------------------------------

  onOpen() {
    this.socketUsed = false;
    this.view.setConnection("connected");
    if (this.wasConnected) this.view.announce("Reconnected.");
    this.wasConnected = true;
  }

  onClose({ code, willRetry, delayMs }) {
    this.serverReady = false;
    const interrupted = this.inSession;
    if (code === CLOSE_NOT_AUTHENTICATED || code === CLOSE_NOT_A_LEARNER || code === CLOSE_SUPERSEDED) {
      this.inSession = false;
      this.pendingStart = false;
      this.fatal = true;
      this.audio.stopMicrophone();
      this.view.setMicState("off");
      this.audio.flush("closed");
      this.view.hideAssessing();
      if (code === CLOSE_NOT_AUTHENTICATED) {
        const loginUrl = this.root.dataset.loginUrl;
        this.view.setConnection("closed", "Not logged in");
        this.view.showNotice("Please log in to talk with the tutor.", {
          action: { label: "Log in", onClick: () => (window.location.href = loginUrl) },
        });
      } else if (code === CLOSE_NOT_A_LEARNER) {
        this.view.setConnection("closed", "Not a learner account");
        this.view.showNotice(
          "This account is not a learner account, so it cannot start a tutor session. " +
            "Log in with a learner account.",
        );
      } else {
        this.view.setConnection("closed", "Open in another window");
        this.view.showNotice("Parla was opened in another window, so this one has stopped.", {
          kind: "warning",
          action: { label: "Use Parla here", onClick: () => window.location.reload() },
        });
      }
      this.render();
      return;
    }
    if (willRetry) {
      this.view.setConnection("reconnecting", `Connection lost - reconnecting in ${Math.ceil(delayMs / 1000)} s…`);
      if (interrupted) {
        // The server ends a session whose socket is gone; its audio must not keep playing.
        this.inSession = false;
        this.interrupted = true;
        this.stopping = false;
        this.audio.stopMicrophone();
        this.view.setMicState("off");
        this.audio.flush("connection-lost");
        this.view.hideAssessing();
        this.view.setTurn("idle", { announce: false });
        this.view.showNotice(
          "Connection lost - reconnecting… Your session was interrupted; press Start to begin again once connected.",
          { kind: "warning" },
        );
      } else if (!this.pendingStart) {
        this.view.showNotice("Connection lost - reconnecting…", { kind: "warning" });
      }
    } else {
      this.view.setConnection("closed", this.ended ? "Closed (session ended)" : "Disconnected");
      if (interrupted) this.endSession();
    }
    this.render();
  }

  onEvent(msg) {
    switch (msg.type) {
      case "state":
        this.onState(msg);
        break;
      case "transcript":
        this.view.transcriptEvent(msg);
        break;
      case "audio.start":
        this.audioItem = msg.item_id;
        this.root.dataset.voice = msg.voice || "";
        this.root.dataset.speaker = msg.role || "";
        break;
      case "audio.end":
        this.audio.end(msg.item_id);
        if (this.audioItem === msg.item_id) this.audioItem = null;
        break;
      case "level":
        this.view.setLevel(msg.level, msg.ladder);
        break;
      case "playback.flush":
        this.onFlush(msg.request_id);
        break;
      case "assessing":
        this.view.setAssessing(msg.progress, msg.elapsed_ms);
        break;
      case "assessment":
        this.view.hideAssessing();
        this.view.showAssessment(msg, this.levelNames);
        break;
      case "error":
        this.view.showNotice(msg.message || `Error: ${msg.code}`, { kind: "error" });
        break;
      default:
        console.debug("parla: unhandled event", msg.type);
    }
  }

  onState(msg) {
    const first = !this.serverReady;
    this.serverReady = true;
    if (typeof msg.demo === "boolean") this.view.setDemo(msg.demo);
    if (first) {
      if (this.interrupted) {
        this.view.showNotice("Reconnected. Your session was interrupted: press Start to begin a new one.", {
          kind: "info",
        });
      } else if (this.view.notice.dataset.kind === "warning") {
        this.view.clearNotice();
      }
      if (this.pendingStart) {
        this.sendStart();
        return;
      }
    }
    if (!this.inSession) {
      this.render();
      return; // the state of an idle connection: the page shows "press Start"
    }
    this.state = msg.state;
    this.view.setTurn(msg.state);
    if (this.audio.microphoneOn) this.view.setMicState(MIC_PAUSED_STATES.has(msg.state) ? "paused" : "on");
    if (msg.state === "ended") {
      this.endSession();
      this.view.showNotice(
        this.view.card.hidden
          ? "Session ended."
          : "Session ended. Your assessment is below and in your history.",
        { kind: "info" },
      );
    }
    this.render();
  }

  // -- audio ------------------------------------------------------------------------------------

  onMicFrame(pcm) {
    if (!this.inSession || this.stopping || MIC_PAUSED_STATES.has(this.state)) return;
    if (this.socket.sendBinary(pcm)) {
      this.framesSent += 1;
      this.root.dataset.framesSent = String(this.framesSent);
    }
  }

  onAudio(buffer) {
    this.framesReceived += 1;
    this.root.dataset.framesReceived = String(this.framesReceived);
    const item = this.audioItem;
    if (item === null || this.flushedItems.has(item)) return;
    this.audio.play(item, buffer);
  }

  async onFlush(requestId) {
    const item = this.audioItem;
    if (item !== null) this.flushedItems.add(item); // frames of it still in flight are dropped
    const result = await this.audio.flush(requestId);
    // No playback (sound never started) or no answer from the audio thread: nothing was played.
    const itemId = (result && result.itemId) || item;
    const playedMs = result && result.itemId ? result.playedMs : 0;
    if (itemId && (!result || result.dropped)) this.view.markInterrupted(itemId);
    this.socket.send({ type: "playback.flushed", request_id: requestId, item_id: itemId, played_ms: playedMs });
  }

  onPlayed({ itemId, playedMs }) {
    if (itemId) this.socket.send({ type: "playback.report", item_id: itemId, played_ms: playedMs });
  }
}

const root = document.getElementById("tutor");
if (root) window.parla = new TutorPage(root);
