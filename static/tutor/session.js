// The tutor page: wires the /ws/tutor/ socket, the audio engine and the view together.
// Wire protocol: docs/internal-contracts.md ("Browser wire protocol").

import { AudioEngine, MicrophoneError } from "./audio.js";
import { CLOSE_FORBIDDEN, CLOSE_NOT_AUTHENTICATED, CLOSE_SERVICE_RESTART, CLOSE_SUPERSEDED, EVENT_BUSY } from "./protocol.js";
import { ReconnectingSocket, socketUrl } from "./socket.js";
import { SessionView } from "./ui.js";

// The page's session, one phase at a time (`TutorPage.setPhase` is the only way to change it):
//
//   idle --Start--> starting --session.start sent--> running --Stop--> stopping
//   running|stopping --`state: ended`, or the socket closed for good--> ended
//   running --connection lost (or handed over by a draining server, 4012)--> resuming
//   idle --loaded again (reload) in a tab whose session was running, its id known--> resuming
//   resuming --`session` resumed on the next connection--> running      (the same placement goes on)
//   resuming --the server cannot continue it (`resume_*` error)--> interrupted
//   stopping --connection lost, reconnecting--> interrupted
//   running --start refused by a draining server (4012)--> starting (again, on the next connection)
//   interrupted|ended --Start--> starting          any --refusal close code--> refused
const PHASE = Object.freeze({
  idle: "idle", // no session yet on this page
  starting: "starting", // Start pressed: session.start goes out once the server is ready
  running: "running", // session.start sent: the learner talks with the tutor
  stopping: "stopping", // Stop pressed: the server ends the session and sends `state: ended`
  resuming: "resuming", // the connection dropped mid-session: reconnecting to continue the same placement
  interrupted: "interrupted", // the connection dropped during a session: the server ended it
  ended: "ended", // the session ended (no reconnecting after that)
  refused: "refused", // the server refused this page for good (login, account, another tab)
});
const TRANSITIONS = {
  idle: ["starting", "resuming", "refused"],
  starting: ["running", "refused"],
  running: ["starting", "stopping", "resuming", "interrupted", "ended", "refused"],
  stopping: ["interrupted", "ended", "refused"],
  resuming: ["running", "interrupted", "ended", "refused"],
  interrupted: ["starting", "refused"],
  ended: ["starting", "refused"],
  refused: [],
};
const CAN_START = new Set([PHASE.idle, PHASE.interrupted, PHASE.ended]);
const IN_SESSION = new Set([PHASE.running, PHASE.stopping, PHASE.resuming]);

// What the current connection can do for a session. Apart from the phase: a connection comes and
// goes on its own, and the server runs one session per connection.
const LINK = Object.freeze({
  waiting: "waiting", // connecting, or open and its first `state` not yet here
  ready: "ready", // the server said `state` and no session ran on this connection
  used: "used", // session.start went out on it (open or since closed): a new session needs a new one
});

// While the server is in these states the learner's microphone is not sent (the server freezes
// its input during grading and the summary anyway; this saves the bandwidth).
const MIC_PAUSED_STATES = new Set(["assessing", "summary", "ended"]);

// This tab's running session, remembered across a reload (sessionStorage is per tab) as
// {"sessionId": id or null}: the server keeps a placement whose page went away (PARLA_RESUME_SECONDS),
// so the page that comes back resumes it by its id; without an id (not known yet, or Stop pressed) or
// when the server cannot continue it, the page says that the session ended.
const RUNNING_KEY = "parla.sessionRunning";
const RELOAD_NOTICE =
  "Your last session ended when this page was reloaded or left. What it found is in your history; " +
  "press Start to begin a new one.";

/** The session this tab was running when it was reloaded: null (none), or {sessionId} (an int or null). */
function takeRunningSession() {
  const stored = sessionStorage.getItem(RUNNING_KEY);
  sessionStorage.removeItem(RUNNING_KEY);
  if (stored === null) return null;
  let parsed = null;
  try {
    parsed = JSON.parse(stored);
  } catch {
    // an older page's timestamp, or garbage: a session ran, its id unknown
  }
  const id = parsed && typeof parsed === "object" ? parsed.sessionId : null;
  return { sessionId: Number.isInteger(id) ? id : null };
}

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

    this.phase = PHASE.idle;
    root.dataset.phase = this.phase;
    this.link = LINK.waiting;
    this.sessions = 0; // sessions started on this page: a new one starts with a clean slate
    this.runningElsewhere = false; // the server said a session of this learner runs in another window
    this.state = "idle"; // the server's `state` of the running session
    this.sessionId = null; // the running session's id (the `session` event): resumed by it after a drop
    this.audioItem = null; // item_id of the assistant audio arriving now (from `audio.start`)
    this.flushedItems = new Set(); // audio of these items is dropped if any still arrives
    this.framesSent = 0;
    this.framesReceived = 0;

    this.audio = new AudioEngine(
      { captureUrl: root.dataset.captureUrl, playbackUrl: root.dataset.playbackUrl },
      {
        onFrame: (pcm) => this.onMicFrame(pcm),
        onLevel: (rms) => this.view.setMicLevel(rms),
        onPlayed: (report) => this.onPlayed(report),
        onPlaying: (playing) => (this.root.dataset.playing = playing ? "true" : "false"),
      },
    );
    this.socket = new ReconnectingSocket(socketUrl(root.dataset.wsPath), {
      onOpen: (info) => this.onOpen(info),
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
    const reloaded = takeRunningSession();
    this.reloadedMidSession = reloaded !== null;
    // Resuming after a reload: no click has started the audio (see onSession).
    this.resumingReload = reloaded !== null && reloaded.sessionId !== null;
    if (this.resumingReload) {
      // As after a dropped connection: the first `state` sends session.resume with this id.
      this.sessionId = reloaded.sessionId;
      this.view.setTurn("reconnecting", { announce: false });
      this.view.showNotice("Reconnecting to continue your session…", { kind: "info" });
      this.setPhase(PHASE.resuming);
    } else if (this.reloadedMidSession) {
      this.showReloadNotice();
    }
    this.render();
    this.socket.connect();
  }

  showReloadNotice() {
    this.view.showNotice(RELOAD_NOTICE, {
      kind: "info",
      action: { label: "Open your history", onClick: () => (window.location.href = this.root.dataset.historyUrl) },
    });
  }

  // -- phase ------------------------------------------------------------------------------------

  /** Move the session to `next` (one of PHASE, allowed by TRANSITIONS) and show it. */
  setPhase(next) {
    if (!TRANSITIONS[this.phase].includes(next)) {
      throw new Error(`parla: no transition from ${this.phase} to ${next}`);
    }
    this.phase = next;
    this.root.dataset.phase = next;
    this.rememberSession();
    this.render();
  }

  /** Keep this tab's session for a reload (RUNNING_KEY): resumable by its id unless Stop was pressed. */
  rememberSession() {
    if (!IN_SESSION.has(this.phase)) {
      sessionStorage.removeItem(RUNNING_KEY);
      return;
    }
    const sessionId = this.phase === PHASE.stopping ? null : this.sessionId;
    sessionStorage.setItem(RUNNING_KEY, JSON.stringify({ sessionId }));
  }

  get inSession() {
    return IN_SESSION.has(this.phase);
  }

  // -- controls ---------------------------------------------------------------------------------

  render() {
    const active = this.phase === PHASE.running;
    this.view.setControls({
      canStart: CAN_START.has(this.phase),
      canStop: active && !MIC_PAUSED_STATES.has(this.state),
      canAnswer: active && this.socket.isOpen && !MIC_PAUSED_STATES.has(this.state),
      startLabel: this.sessions > 0 && !this.inSession ? "Start a new session" : this.runningElsewhere ? "Start here" : "Start",
    });
  }

  async start() {
    if (!CAN_START.has(this.phase)) return;
    // Inside the click: the AudioContext may only start playing in response to a gesture.
    const audioReady = this.initAudio();
    this.view.clearNotice();
    this.runningElsewhere = false;
    if (this.sessions > 0) this.resetForNewSession();
    this.setPhase(PHASE.starting);
    this.view.setTurn("connecting");

    await this.startAudio(audioReady);
    // The first `state` may have started the session while we waited, or the server refused.
    if (this.phase !== PHASE.starting) return;
    // The server runs one session per connection: a new one after it needs a fresh connection.
    if (this.link === LINK.used || !this.socket.active) {
      this.link = LINK.waiting;
      this.socket.reconnectNow(); // sendStart follows the first `state` of the new connection
    } else if (this.link === LINK.ready && this.socket.isOpen) {
      this.sendStart();
    } // else: connecting or reconnecting; sendStart follows the first `state`
  }

  /** The AudioContext and its playback (AudioEngine.init): true once ready, false (said) if impossible. */
  initAudio() {
    return this.audio.init().then(
      () => true,
      (err) => {
        this.view.showNotice(`Audio is not available in this browser (${err.message}). You can answer in writing.`);
        return false;
      },
    );
  }

  /** Sound and microphone, as on Start. Without a click (a session resumed after a reload) the browser
   * may hold the AudioContext back: the learner is offered "Turn sound on" at once, and the microphone
   * follows that tap (AudioEngine.startMicrophone waits for the context). */
  async startAudio(audioReady, { gesture = true } = {}) {
    // No click on this page yet (where the browser says): the context waits for one, so offer it now.
    if (!gesture && !(navigator.userActivation && navigator.userActivation.hasBeenActive)) this.offerSound();
    if (!(await audioReady)) return;
    await this.enableMicrophone();
    this.offerSound();
  }

  /** The browser holds the AudioContext back (no user gesture yet): a tap on the notice resumes it. */
  offerSound() {
    const ctx = this.audio.ctx;
    const shown = !this.view.notice.hidden && this.view.noticeAction.onclick === this.soundAction;
    if (!ctx || ctx.state === "running" || shown) return;
    const done = () => {
      if (ctx.state !== "running") return;
      ctx.removeEventListener("statechange", done);
      if (this.view.noticeAction.onclick === onClick) this.view.clearNotice();
    };
    const onClick = () => ctx.resume().then(done);
    this.soundAction = onClick;
    ctx.addEventListener("statechange", done); // started (the tap, or the browser let it): the notice goes
    this.view.showNotice("Your browser is holding back the tutor's sound.", {
      kind: "info",
      action: { label: "Turn sound on", onClick },
    });
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
    const msg = { type: "session.start" };
    if (this.language) msg.language = this.language;
    // The warm-up: where placement starts ("" = not sure: from A1). See assessments/placement.py.
    const selfAssessment = document.getElementById("self-assessment");
    if (selfAssessment && selfAssessment.value) msg.self_assessment = selfAssessment.value;
    if (!this.socket.send(msg)) return; // the socket closed under us: start after reconnecting
    this.link = LINK.used;
    this.sessionId = null;
    this.sessions += 1;
    this.state = "connecting";
    this.setPhase(PHASE.running);
    this.view.showConversation();
  }

  stop() {
    if (this.phase !== PHASE.running) return;
    this.socket.send({ type: "session.stop" });
    this.audio.stopMicrophone();
    this.view.setMicState("off");
    this.setPhase(PHASE.stopping);
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
    this.socket.shouldReconnect = false; // the server may close now: that is not a lost connection
    this.audio.stopMicrophone();
    this.view.setMicState("off");
    this.view.hideAssessing();
    this.setPhase(PHASE.ended);
  }

  // -- socket -----------------------------------------------------------------------------------

  onOpen({ reconnected }) {
    this.link = LINK.waiting;
    // Resuming: "connected" once the server continued the session (onSession) or could not (`resume_*`).
    if (this.phase === PHASE.resuming) this.view.setConnection("reconnecting", "Continuing your session…");
    else this.view.setConnection("connected");
    if (reconnected) this.view.announce("Reconnected.");
  }

  onClose({ code, willRetry, delayMs }) {
    if (this.link === LINK.ready) this.link = LINK.waiting; // a used one stays used until the next opens
    const interrupted = this.inSession;
    if (code === CLOSE_NOT_AUTHENTICATED || code === CLOSE_FORBIDDEN || code === CLOSE_SUPERSEDED) {
      this.audio.stopMicrophone();
      this.view.setMicState("off");
      this.audio.flush("closed");
      this.view.hideAssessing();
      // Whatever this page was doing has stopped: "The tutor is speaking" must not stay on screen.
      if (code === CLOSE_SUPERSEDED) this.view.setTurn(interrupted ? "superseded" : "elsewhere");
      else this.view.setTurn(interrupted ? "ended" : "idle", { announce: false });
      if (code === CLOSE_NOT_AUTHENTICATED) {
        const loginUrl = this.root.dataset.loginUrl;
        this.view.setConnection("closed", "Not logged in");
        this.view.showNotice("Please log in to talk with the tutor.", {
          action: { label: "Log in", onClick: () => (window.location.href = loginUrl) },
        });
      } else if (code === CLOSE_FORBIDDEN) {
        this.view.setConnection("closed", "Not a learner account");
        this.view.showNotice(
          "This account is not a learner account, so it cannot start a tutor session. " +
            "Log in with a learner account.",
        );
      } else {
        this.view.setConnection("closed", "Session in another window");
        this.view.showNotice("You started a session in another window, so the session in this one has stopped.", {
          kind: "warning",
          action: { label: "Use Parla here", onClick: () => window.location.reload() },
        });
      }
      this.setPhase(PHASE.refused);
      return;
    }
    if (willRetry && this.phase === PHASE.resuming) {
      this.view.setConnection("reconnecting", `Reconnecting in ${Math.ceil(delayMs / 1000)} s…`);
      return; // still trying: the server keeps the placement for a while (PARLA_RESUME_SECONDS)
    }
    if (willRetry && this.phase === PHASE.running && this.sessionId !== null && this.state !== "ended") {
      // Not a deliberate end: the network dropped, or a draining server handed the placement over
      // (4012). The server keeps it; the next connection (any process, through the proxy) resumes it.
      this.audio.flush("connection-lost"); // what was queued will not be heard; the tutor asks again
      this.view.hideAssessing();
      this.view.setTurn("reconnecting");
      this.view.setConnection("reconnecting", code === CLOSE_SERVICE_RESTART ? "Moving to another server…" : undefined);
      this.view.showNotice("Connection lost - reconnecting to continue your session…", { kind: "warning" });
      this.setPhase(PHASE.resuming);
      return;
    }
    if (code === CLOSE_SERVICE_RESTART && willRetry && this.phase === PHASE.running && this.state === "connecting") {
      // The process was draining for a deploy and refused the start: the next connection (through the
      // proxy, another process) starts it again, as if Start had been pressed then.
      this.link = LINK.waiting;
      this.setPhase(PHASE.starting);
      this.view.setConnection("reconnecting", "Moving to another server…");
      this.render();
      return;
    }
    if (willRetry) {
      this.view.setConnection("reconnecting", `Connection lost - reconnecting in ${Math.ceil(delayMs / 1000)} s…`);
      if (interrupted) {
        // The server ends a session whose socket is gone; its audio must not keep playing.
        this.audio.stopMicrophone();
        this.view.setMicState("off");
        this.audio.flush("connection-lost");
        this.view.hideAssessing();
        this.view.setTurn("idle", { announce: false });
        this.view.showNotice(
          "Connection lost - reconnecting… Your session was interrupted; press Start to begin again once connected.",
          { kind: "warning" },
        );
        this.setPhase(PHASE.interrupted);
      } else if (this.phase !== PHASE.starting) {
        this.view.showNotice("Connection lost - reconnecting…", { kind: "warning" });
      }
    } else {
      this.view.setConnection("closed", this.phase === PHASE.ended ? "Closed (session ended)" : "Disconnected");
      if (interrupted) this.endSession();
    }
    this.render();
  }

  onEvent(msg) {
    switch (msg.type) {
      case "state":
        this.onState(msg);
        break;
      case "session":
        this.onSession(msg);
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
        if (this.phase === PHASE.resuming && String(msg.code).startsWith("resume_")) {
          // The server cannot continue it (ended, waited too long): what it found is in the history.
          this.sessionId = null;
          this.audio.stopMicrophone();
          this.view.setMicState("off");
          this.view.setTurn("idle", { announce: false });
          this.view.setConnection("connected");
          if (this.resumingReload) this.showReloadNotice();
          this.resumingReload = false;
          this.setPhase(PHASE.interrupted);
        }
        break;
      case EVENT_BUSY:
        this.view.showNotice(msg.message, { kind: "busy" }); // cleared when the tutor speaks again
        break;
      default:
        console.debug("parla: unhandled event", msg.type);
    }
  }

  /** The session's id; on a resumed one, the conversation so far follows (drawn afresh). */
  onSession(msg) {
    this.sessionId = msg.session_id;
    this.rememberSession();
    if (!msg.resumed) return;
    this.view.transcript.replaceChildren();
    this.view.entries.clear();
    this.flushedItems.clear();
    this.audioItem = null;
    this.view.clearNotice();
    this.view.announce("Reconnected: your session continues.");
    this.view.setConnection("connected");
    if (this.phase !== PHASE.resuming) return;
    this.setPhase(PHASE.running);
    if (this.resumingReload) {
      // A reloaded page has no sound or microphone yet, and no click to start them in.
      this.resumingReload = false;
      this.startAudio(this.initAudio(), { gesture: false });
    }
  }

  onState(msg) {
    const first = this.link === LINK.waiting; // the first `state` of this connection
    if (first) this.link = LINK.ready;
    if (typeof msg.demo === "boolean") this.view.setDemo(msg.demo);
    if (first && msg.running_elsewhere && !this.reloadedMidSession && this.phase === PHASE.idle) {
      this.runningElsewhere = true;
      this.view.showNotice(
        "A session of yours is running in another window. Pressing Start here stops it there and begins a new one here.",
        { kind: "info" },
      );
    }
    if (first) {
      if (this.phase === PHASE.interrupted) {
        this.view.showNotice("Reconnected. Your session was interrupted: press Start to begin a new one.", {
          kind: "info",
        });
      } else if (this.view.notice.dataset.kind === "warning") {
        this.view.clearNotice();
      }
      if (this.phase === PHASE.starting) {
        this.sendStart();
        return;
      }
      if (this.phase === PHASE.resuming) {
        if (this.socket.send({ type: "session.resume", session_id: this.sessionId })) this.link = LINK.used;
        return;
      }
    }
    if (!this.inSession) {
      this.render();
      return; // the state of an idle connection: the page shows "press Start"
    }
    this.state = msg.state;
    this.view.setTurn(msg.state);
    if (msg.state === "tutor_speaking" && this.view.notice.dataset.kind === "busy") this.view.clearNotice();
    if (this.audio.microphoneOn) this.view.setMicState(MIC_PAUSED_STATES.has(msg.state) ? "paused" : "on");
    if (msg.state === "ended") {
      this.endSession();
      // An error that ended the session (the tutor service refused, ran out of quota...) stays readable.
      if (this.view.notice.hidden || this.view.notice.dataset.kind !== "error") this.view.showNotice(
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
    if (this.phase !== PHASE.running || MIC_PAUSED_STATES.has(this.state)) return;
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

  // What the learner hears, for the server: barge-in, the speaking state and "delivered" follow it.
  onPlayed({ itemId, playedMs, kind }) {
    if (itemId) this.socket.send({ type: "playback.report", item_id: itemId, played_ms: playedMs, kind });
  }
}

const root = document.getElementById("tutor");
if (root) window.parla = new TutorPage(root);
