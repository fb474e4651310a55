// Teachers' live view: one table row per running tutor session, replaced by each snapshot.
import { CLOSE_FORBIDDEN, CLOSE_NOT_AUTHENTICATED } from "./protocol.js";
import { ReconnectingSocket, socketUrl } from "./socket.js";

const root = document.getElementById("live");
const rows = document.getElementById("live-sessions");
const status = document.getElementById("live-status");
const LADDER_MARK = { sustained: "✓", breakdown: "✕", current: "•", untested: "·" };

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function render(session) {
  document.getElementById("live-empty")?.remove();
  const id = `live-session-${session.session_id}`;
  const row = document.getElementById(id) || rows.appendChild(document.createElement("tr"));
  row.id = id;
  row.dataset.state = session.state;
  const ladder = Object.entries(session.ladder).map(([level, mark]) => `${level}${LADDER_MARK[mark] || ""}`).join(" ");
  const a = session.assessment;
  const assessment = a ? `${a.level} (${a.status}${a.partial ? ", partial" : ""})` : "-";
  row.replaceChildren(
    cell(session.learner), cell(session.language), cell(session.state.replace("_", " ")),
    cell(session.level), cell(ladder), cell(String(session.probes)), cell(assessment),
  );
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
