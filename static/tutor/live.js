// Teachers' live view: one table row per running tutor session, replaced by each snapshot.
import { CLOSE_FORBIDDEN, CLOSE_NOT_AUTHENTICATED } from "./protocol.js";
import { ReconnectingSocket, socketUrl } from "./socket.js";

const root = document.getElementById("live");
const rows = document.getElementById("live-sessions");
const status = document.getElementById("live-status");
// The ladder's marks, from the legend on the page (one place says what each means).
const LADDER_MARK = Object.fromEntries(
  [...document.querySelectorAll("#ladder-legend [data-state]")].map((e) => [e.dataset.state, e.dataset.mark]),
);

// Each cell carries its column's name: on a phone the rows become cards that label their values.
const COLUMNS = ["Learner", "Language", "State", "Level", "Ladder", "Probes", "Assessment"];

function cell(content, column) {
  const td = document.createElement("td");
  td.dataset.label = column;
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  return td;
}

function link(text, href) {
  if (!href) return text;
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

function render(session) {
  document.getElementById("live-empty")?.remove();
  const id = `live-session-${session.session_id}`;
  const row = document.getElementById(id) || rows.appendChild(document.createElement("tr"));
  row.id = id;
  row.dataset.state = session.state;
  const ladder = Object.entries(session.ladder).map(([level, mark]) => `${level}${LADDER_MARK[mark] || ""}`).join(" ");
  const a = session.assessment;
  // Once assessed, the level is the assessment's (the rating), no longer the level being probed.
  const level = a && a.level ? `${a.level} (assessed)` : session.level;
  const assessment = a ? link(`${a.level || "not rated"} - ${a.status.replace("_", " ")}${a.partial ? ", partial" : ""}`, a.url) : "-";
  const values = [
    link(session.learner, a?.url || session.session_url), session.language_name || session.language,
    session.state.replace("_", " "), level, ladder, String(session.probes), assessment,
  ];
  row.replaceChildren(...values.map((value, i) => cell(value, COLUMNS[i])));
}

new ReconnectingSocket(
  socketUrl(root.dataset.wsPath),
  {
    onOpen: () => (status.textContent = "Watching live sessions."),
    onEvent: (event) => {
      if (event.type === "session") render(event.session);
    },
    onClose: ({ fatal }) => {
      if (fatal) {
        status.textContent = "The live view is for teachers: log in with a teacher account.";
        status.dataset.kind = "error";
        return;
      }
      status.textContent = "Connection lost - reconnecting…";
      status.dataset.kind = "warning";
    },
  },
  { refusalCodes: [CLOSE_NOT_AUTHENTICATED, CLOSE_FORBIDDEN] },
).connect();
