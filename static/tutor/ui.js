// DOM rendering for the tutor page (templates/tutor/session.html). No state about the protocol
// lives here: session.js decides, this module shows.

const TURN_TEXT = {
  idle: "Press Start when you are ready.",
  ready: "Press Start when you are ready.",
  connecting: "Connecting to the tutor…",
  listening: "Your turn: speak, or type your answer.",
  tutor_speaking: "The tutor is speaking.",
  assessing: "Assessing your level…",
  summary: "Your summary is being read to you.",
  ended: "Session ended.",
  superseded: "Stopped: you started a session in another window.",
  elsewhere: "Your session is in another window.",
  reconnecting: "Reconnecting - your session continues where it was…",
};

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Connection lost - reconnecting…",
  closed: "Disconnected",
};

const LADDER_STATE_TEXT = {
  sustained: "sustained",
  current: "current level",
  breakdown: "ceiling: broke down here",
  untested: "not yet tested",
};

const ROLE_LABEL = { learner: "You", tutor: "Tutor", narrator: "Summary" };

const STATUS_TEXT = {
  pending: "Being graded…",
  graded: "Graded. The spoken summary is on its way.",
  delivered: "Graded and read aloud to you.",
  delivery_failed: "Graded. The spoken summary could not be played, so here it is in writing.",
  not_rated: "Not rated: this session gave no level (the summary says why).",
};

// A criterion's label is its key, capitalised: the server's criteria (assessments/grading.py
// CRITERIA: range, accuracy, fluency, interaction, coherence) read well that way, and so will a new one.
function humanize(key) {
  const words = String(key).replace(/[_-]+/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export class SessionView {
  constructor(root) {
    this.root = root;
    const $ = (id) => document.getElementById(id);
    this.statusBar = root.querySelector(".status-bar");
    this.connection = $("connection-status");
    this.turn = $("turn-status");
    this.notice = $("notice");
    this.noticeText = $("notice-text");
    this.noticeAction = $("notice-action");
    this.announcer = $("announcer");
    this.startButton = $("start-button");
    this.stopButton = $("stop-button");
    this.meter = $("mic-meter");
    this.meterFill = this.meter.querySelector(".meter-fill");
    this.micState = $("mic-state");
    this.ladder = $("ladder");
    this.levelNow = $("level-now");
    this.assessing = $("assessing");
    this.assessingProgress = $("assessing-progress");
    this.assessingElapsed = $("assessing-elapsed");
    this.transcript = $("transcript");
    this.transcriptEmpty = $("transcript-empty");
    this.answerForm = $("answer-form");
    this.answerText = $("answer-text");
    this.answerButton = $("answer-send");
    this.card = $("assessment");
    this.demoLabel = $("demo-label");
    this.entries = new Map(); // item_id -> transcript <li>
    this.lastMeterAria = 0;
  }

  // -- status -----------------------------------------------------------------------------------

  setConnection(state, detail = "") {
    this.root.dataset.connection = state;
    this.connection.dataset.connection = state;
    this.connection.textContent = detail || CONNECTION_TEXT[state] || state;
  }

  setTurn(state, { announce = true } = {}) {
    this.root.dataset.state = state;
    this.turn.dataset.state = state;
    const text = TURN_TEXT[state] || state;
    if (this.turn.textContent !== text) {
      this.turn.textContent = text;
      if (announce) this.announce(text);
    }
  }

  /** A session began: on a phone, scroll the state, the conversation and the answer box into view. */
  showConversation() {
    if (window.matchMedia("(max-width: 40rem)").matches) this.statusBar.scrollIntoView({ block: "start" });
  }

  setDemo(demo) {
    this.root.dataset.demo = demo ? "true" : "false";
    this.demoLabel.hidden = !demo;
  }

  announce(text) {
    // Re-set so identical consecutive messages are still read.
    this.announcer.textContent = "";
    window.setTimeout(() => (this.announcer.textContent = text), 50);
  }

  /** A message the learner must see (role=alert); `action` = {label, onClick} adds a button. */
  showNotice(text, { kind = "error", action = null } = {}) {
    this.notice.hidden = false;
    this.notice.dataset.kind = kind;
    this.noticeText.textContent = text;
    this.noticeAction.hidden = !action;
    if (action) {
      this.noticeAction.textContent = action.label;
      this.noticeAction.onclick = action.onClick;
    }
  }

  clearNotice() {
    this.notice.hidden = true;
    this.noticeText.textContent = "";
    this.noticeAction.hidden = true;
    this.noticeAction.onclick = null;
  }

  // -- controls ---------------------------------------------------------------------------------

  setControls({ canStart, canStop, canAnswer, startLabel }) {
    this.startButton.disabled = !canStart;
    this.stopButton.disabled = !canStop;
    this.answerText.disabled = !canAnswer;
    this.answerButton.disabled = !canAnswer;
    if (startLabel) this.startButton.textContent = startLabel;
  }

  /** `rms` 0..1 from the capture worklet, shown on a -60..0 dBFS scale. */
  setMicLevel(rms) {
    const db = rms > 0 ? 20 * Math.log10(rms) : -100;
    const level = Math.max(0, Math.min(1, (db + 60) / 60));
    this.meterFill.style.clipPath = `inset(0 ${(100 - level * 100).toFixed(1)}% 0 0)`;
    const pct = Math.round(level * 100);
    // aria-valuenow changes are not announced; update it at a calm rate anyway.
    const now = performance.now();
    if (now - this.lastMeterAria > 500) {
      this.lastMeterAria = now;
      this.meter.setAttribute("aria-valuenow", String(pct));
      this.meter.setAttribute("aria-valuetext", pct < 5 ? "silent" : `${pct} percent`);
    }
  }

  setMicState(text) {
    this.micState.textContent = text;
  }

  // -- transcript -------------------------------------------------------------------------------

  /** Show a transcript event: a partial one carries the next piece, the final one the whole text. */
  transcriptEvent({ role, item_id: itemId, text, final, mode, spoken_ms: spokenMs }) {
    const key = itemId || `${role}-${this.entries.size}`;
    let entry = this.entries.get(key);
    if (!entry) {
      if (this.transcriptEmpty) {
        this.transcriptEmpty.remove();
        this.transcriptEmpty = null;
      }
      const body = el("p", { class: "utterance-text" });
      entry = el(
        "li",
        { class: `utterance utterance-${role}`, "data-role": role, "data-item-id": itemId || null },
        el("span", { class: "utterance-role", text: ROLE_LABEL[role] || role }),
        body,
      );
      entry.body = body;
      this.entries.set(key, entry);
      this.transcript.append(entry);
    }
    if (final && !text && typeof spokenMs === "number") {
      // A spoken answer whose words are not known (no recognizer): say what is known, never words.
      entry.body.textContent = `spoken answer, ${(spokenMs / 1000).toFixed(1)} s`;
      entry.dataset.words = "unknown";
    } else if (final) {
      entry.body.textContent = text;
      delete entry.dataset.words;
    } else entry.body.textContent += text;
    if (mode) entry.dataset.mode = mode;
    entry.dataset.final = final ? "true" : "false";
    entry.setAttribute("aria-busy", final ? "false" : "true");
    this.scrollTranscript();
  }

  scrollTranscript() {
    const t = this.transcript;
    // Follow the conversation unless the learner scrolled up to reread.
    if (t.scrollHeight - t.scrollTop - t.clientHeight < 120) t.scrollTop = t.scrollHeight;
  }

  // -- ladder and assessing ---------------------------------------------------------------------

  setLevel(level, ladder) {
    this.root.dataset.level = level;
    for (const li of this.ladder.querySelectorAll("li[data-level]")) {
      const code = li.dataset.level;
      const state = (ladder && ladder[code]) || (code === level ? "current" : "untested");
      li.dataset.state = state;
      if (code === level && state === "current") li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
      li.querySelector(".ladder-state").textContent = LADDER_STATE_TEXT[state] || state;
    }
    // Once placement has ended no step is current: the result is the assessment card's to show.
    const probing = !ladder || ladder[level] === "current";
    this.levelNow.textContent = level;
    this.levelNow.hidden = !probing;
  }

  /** The tutor's item was cut off (barge-in or handover): say so next to its transcript. */
  markInterrupted(itemId) {
    const entry = this.entries.get(itemId);
    if (entry) entry.dataset.interrupted = "true";
  }

  setAssessing(progress, elapsedMs) {
    this.assessing.hidden = false;
    if (typeof progress === "number") this.assessingProgress.value = Math.max(0, Math.min(1, progress));
    if (typeof elapsedMs === "number") {
      this.assessingElapsed.textContent = `${(elapsedMs / 1000).toFixed(0)} s`;
    }
  }

  hideAssessing() {
    this.assessing.hidden = true;
  }

  // -- assessment card --------------------------------------------------------------------------

  showAssessment({ id, level, criteria, summary, status, partial }, levelNames) {
    const card = this.card;
    // Not rated: no level at all (too little evidence), never a default one.
    const rated = Boolean(level);
    card.dataset.level = level || "";
    card.dataset.status = status || "";
    if (id !== undefined && id !== null) card.dataset.assessmentId = String(id);
    const badge = card.querySelector("#assessment-level");
    badge.textContent = rated ? level : "";
    badge.hidden = !rated;
    // Cut short with evidence: what is known is a lower bound ("at least A2").
    const name = rated ? levelNames[level] || "" : "Not rated";
    card.querySelector("#assessment-level-name").textContent = rated && partial ? `at least ${level}, ${name}` : name;
    card.querySelector("#assessment-status").textContent = STATUS_TEXT[status] || "";
    card.querySelector("#assessment-partial").hidden = !(partial && rated);
    card.querySelector("#assessment-summary").textContent = summary || "";
    card.querySelector("#assessment-summary-block").hidden = !summary;
    const list = card.querySelector("#assessment-criteria");
    list.replaceChildren(...this.criteriaItems(criteria || {}));
    card.querySelector("#assessment-criteria-block").hidden = list.children.length === 0;
    const link = card.querySelector("#assessment-link");
    if (link && id !== undefined && id !== null) {
      link.href = link.dataset.template.replace(/\/0\/$/, `/${id}/`);
      link.hidden = false;
    }
    const first = card.hidden;
    card.hidden = false;
    if (first) {
      const calm = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      card.scrollIntoView({ behavior: calm ? "auto" : "smooth", block: "start" });
      card.querySelector("#assessment-title").focus({ preventScroll: true });
      this.announce(rated ? `Your assessed level is ${partial ? "at least " : ""}${level}.` : STATUS_TEXT.not_rated);
    }
  }

  /** Criteria as <div><dt/><dd/></div>: a value may be a number, a level, text or {score, ...}. */
  criteriaItems(criteria) {
    const items = [];
    for (const [key, value] of Object.entries(criteria)) {
      let shown;
      let note = "";
      if (value !== null && typeof value === "object") {
        const score = value.level ?? value.score ?? value.value ?? value.rating;
        shown = score !== undefined && score !== null ? String(score) : "";
        note = value.comment ?? value.evidence ?? value.note ?? value.reason ?? "";
        if (!shown) note = "not assessed"; // a criterion the evidence cannot show (e.g. phonology from text)
      } else {
        shown = String(value);
      }
      items.push(
        el(
          "div",
          { class: "criterion", "data-criterion": key },
          el("dt", { text: humanize(key) }),
          el(
            "dd",
            {},
            shown ? el("strong", { text: shown }) : null,
            note ? el("span", { class: "criterion-note", text: ` ${note}` }) : null,
          ),
        ),
      );
    }
    return items;
  }
}
