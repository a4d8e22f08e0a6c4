// The try-it page: one room (?room=ID&name=NAME), its members, code, language and chat.
//
// The code follows the protocol's recipe for a client that sends whole texts with
// acknowledgements (docs/protocol.md, client (3)): every edit is sent at once with
// `baseVersion`; while edits of its own are unacknowledged, updates from others wait (the
// server merges the edits with them, so the text typed on is never replaced under the
// user's caret); once nothing is in flight, the merged text of the last acknowledgement
// and then the newest update that came meanwhile are shown, the caret kept in place.
"use strict";

const params = new URLSearchParams(location.search);
if (!params.get("room")) {
  params.set("room", Math.random().toString(36).slice(2, 10).toUpperCase());
  history.replaceState(null, "", "?" + params);
}
const room = params.get("room");
const name = params.get("name") || "Guest " + Math.floor(Math.random() * 1000);
const $ = (id) => document.getElementById(id);
const editor = $("code");
const state = { base: 0, joined: false, inFlight: 0, acked: 0, waiting: null, ended: null };

$("room").textContent = room;
$("name").textContent = name;

// With access control on: `?token=` (a user's JWT) and `?invite=` (an invite to this room).
const credentials = {};
for (const key of ["token", "invite"]) if (params.get(key)) credentials[key] = params.get(key);
const socket = io({ transports: ["websocket", "polling"], auth: credentials });

function status(text) {
  $("status").textContent = text;
}

// The one region where `a` and `b` differ: `b` is `a` with [from, to) replaced by `insert`.
function region(a, b) {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (
    tail < a.length - head &&
    tail < b.length - head &&
    a[a.length - 1 - tail] === b[b.length - 1 - tail]
  ) tail++;
  return { from: head, to: a.length - tail, insert: b.slice(head, b.length - tail) };
}

// Replace the text, keeping the caret where the user was.
function show(text) {
  const old = editor.value;
  if (old === text) return;
  const { from, to, insert } = region(old, text);
  const place = (at) => (at <= from ? at : at >= to ? at + text.length - old.length : from + insert.length);
  const [start, end] = [place(editor.selectionStart), place(editor.selectionEnd)];
  editor.value = text;
  editor.setSelectionRange(start, end);
}

// The room text at `version`, from another's change or after a reconnect.
function update(version, text) {
  if (version <= state.base) return;
  if (state.inFlight > 0) {
    state.waiting = { version, text };  // shown once the edits in flight are acknowledged
    return;
  }
  state.base = version;
  show(text);
}

function addMessage(message) {
  const item = document.createElement("li");
  const who = document.createElement("strong");
  who.textContent = message.userName + ": ";
  item.append(who, document.createTextNode(message.message));
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
}

socket.on("connect", () => {
  status("joining…");
  const join = { roomId: room, userName: name, userId: null };
  socket.emit("joinRoom", join, async (answer) => {
    if (!answer || !answer.ok) {
      status("refused: " + (answer ? answer.error.message : "no answer"));
      return;
    }
    state.base = answer.version;
    show(answer.code);
    $("language").value = answer.language;
    editor.disabled = answer.role === "viewer";
    state.joined = true;
    status(answer.role ? "connected as " + answer.role : "connected");
    const headers = credentials.token ? { Authorization: "Bearer " + credentials.token } : {};
    const reply = await fetch("/api/sessions/" + encodeURIComponent(room), { headers });
    if (reply.ok) {
      $("messages").replaceChildren();
      for (const message of (await reply.json()).session.messages) addMessage(message);
    }
  });
});
socket.on("connect_error", (error) => {
  if (!socket.active) status("refused: " + error.message);  // not retried (access control)
});
socket.on("accessChanged", (change) => {
  editor.disabled = change.role === "viewer";
  status("connected as " + change.role);
});
socket.on("error", (error) => {
  if (error.code === "access_revoked" || error.code === "token_expired") {
    state.ended = error.message;  // the server disconnects: no point reconnecting
    socket.disconnect();
  }
});
socket.on("disconnect", () => {
  state.joined = false;
  editor.disabled = true;
  status(state.ended || "disconnected; reconnecting…");
});

socket.on("roomUsers", (users) => {
  $("users").replaceChildren(
    ...users.map((user) => {
      const item = document.createElement("li");
      item.textContent = user.name + (user.id === socket.id ? " (you)" : "");
      return item;
    }),
  );
});

editor.addEventListener("input", () => {
  if (!state.joined) return;
  const sent = editor.value;
  state.inFlight += 1;
  const change = { roomId: room, code: sent, baseVersion: state.base };
  socket.emit("codeChange", change, (answer) => {
    state.inFlight -= 1;
    if (answer && answer.ok) state.acked = Math.max(state.acked, answer.version);
    if (state.inFlight > 0) return;
    // Nothing of ours in flight: the room text is what was sent, or (merged with others'
    // changes) `answer.code`; then the newest update that came meanwhile, if it is newer.
    if (answer && answer.ok && answer.version > state.base) {
      state.base = answer.version;
      if (answer.code != null && editor.value === sent) show(answer.code);
    }
    const waiting = state.waiting;
    state.waiting = null;
    if (waiting && waiting.version > state.acked) update(waiting.version, waiting.text);
  });
});

socket.on("codeUpdate", (data) => update(data.version, data.code));

$("language").addEventListener("change", () => {
  socket.emit("languageChange", { roomId: room, language: $("language").value });
});
socket.on("languageUpdate", (update) => {
  $("language").value = update.language;
});

$("chat").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("say").value.trim();
  if (!text) return;
  $("say").value = "";
  socket.emit("chatMessage", { roomId: room, message: text }, (answer) => {
    if (answer && answer.ok) addMessage({ userName: name, message: text });
  });
});
socket.on("newMessage", (data) => addMessage(data.message));

socket.on("sessionSaved", (saved) => {
  $("saved").textContent = "saved v" + saved.version + " at " + saved.savedAt.slice(11, 19);
});
socket.on("error", (error) => status(error.code + ": " + error.message));
