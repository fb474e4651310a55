// Teachers' live view: one table row per running tutor session, replaced by each snapshot.
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

function connect(delay = 500) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}${root.dataset.wsPath}`);
  socket.onopen = () => { status.textContent = "Watching live sessions."; delay = 500; };
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "session") render(event.session);
  };
  socket.onclose = (close) => {
    if (close.code === 4401 || close.code === 4403) {
      status.textContent = "The live view is for teachers: log in with a teacher account.";
      status.dataset.kind = "error";
      return;
    }
    status.textContent = "Connection lost - reconnecting…";
    status.dataset.kind = "warning";
    setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  };
}

connect();
