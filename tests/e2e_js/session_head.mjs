#!/usr/bin/env node
// Plays the current client generation's typical wire session (see docs/protocol.md) with the
// official socket.io-client 4.8 against a running server: per-file editing, the autosaves,
// an upload, the whiteboard, the meeting page and a reload, with two editors (Alice creates
// the room, Bob joins it) and two meeting-page sockets.
//
//   node session_head.mjs <serverUrl> [--room ROOMID] [--timeout SECONDS]
//
// Prints one JSON report on stdout (see harness.mjs for the exit codes).
import {
  Client,
  check,
  checkRoomUsers,
  checkSession,
  equal,
  expectPresence,
  expectSuccess,
  http,
  keys,
  main,
  member,
  options,
  report,
  settle,
  step,
} from "./harness.mjs";

const ALICE = { name: "Alice", userId: "e2e-head-alice" };
const BOB = { name: "Bob", userId: "e2e-head-bob" };
const MAIN = "main.js";
const roomId = options.roomId;

/** What the editor sends on mount, after joinRoom: the code state, its default file. */
function mount(client, user) {
  client.emit("joinRoom", { roomId, userName: user.name, userId: user.userId });
  client.emit("requestCodeState", { roomId });
  client.emit("openFile", { roomId, fileId: MAIN, name: MAIN });
  client.emit("setActiveFile", { roomId, fileId: MAIN });
  client.emit("requestFile", { roomId, fileId: MAIN });
  client.emit("languageChange", { roomId, language: "javascript" });
}

async function run() {
  const started = Date.now();

  step("Alice mounts the editor: join, open, activate and request main.js");
  const alice = await new Client("Alice").connect();
  report.transports.alice = alice.socket.io.engine.transport.name;
  mount(alice, ALICE);
  checkRoomUsers("roomUsers (Alice alone)", await alice.take("roomUsers"), [member(alice, ALICE.name, ALICE.userId)]);
  equal("fileOpened (to the room, Alice included)", { fileId: MAIN, name: MAIN }, await alice.take("fileOpened"));
  equal("activeFileChanged (the room had none)", { fileId: MAIN }, await alice.take("activeFileChanged"));
  // Differs from the original: her setActiveFile names the file already active, and the room
  // is not told again (the unchanged editor, told again, reverts to an old text).
  const snapshot = keys("fileContentSnapshot", await alice.take("fileContentSnapshot"), ["fileId", "name", "content"]);
  equal("fileContentSnapshot.fileId", MAIN, snapshot.fileId);
  const template = snapshot.content;
  check(typeof template === "string" && template.length > 0, "main.js holds the room's starting code", "<text>", template);

  step("Alice POST /api/sessions/create");
  const created = await http("POST", "/api/sessions/create", { roomId, creatorName: ALICE.name, creatorUserId: ALICE.userId });
  expectSuccess("create", created, 201);

  step("Bob mounts the editor: the server answers his code request; Alice hears him");
  const bob = await new Client("Bob").connect();
  report.transports.bob = bob.socket.io.engine.transport.name;
  mount(bob, BOB);
  const both = [member(alice, ALICE.name, ALICE.userId), member(bob, BOB.name, BOB.userId)];
  checkRoomUsers("roomUsers to Bob", await bob.take("roomUsers"), both);
  await expectPresence(alice, "joined", bob, BOB.name);
  const state = keys("receiveCodeState", await bob.take("receiveCodeState"), ["code", "language"]);
  equal("receiveCodeState.code (the room's main.js)", template, state.code);
  equal("codeStateRequest to Alice", { requesterId: bob.id }, await alice.take("codeStateRequest"));
  equal("fileOpened to Alice (Bob's open)", { fileId: MAIN, name: MAIN }, await alice.take("fileOpened"));
  await settle();
  equal("fileContentSnapshot to Bob (he was given that text already)", 0, bob.count("fileContentSnapshot"));
  equal("activeFileChanged to anyone for Bob's setActiveFile of the active file", 1, alice.count("activeFileChanged"));
  equal("activeFileChanged to Bob (nothing changed)", 0, bob.count("activeFileChanged"));

  step("Alice types in main.js (changeFile per keystroke) -> Bob fileContentUpdate each");
  let text = template;
  const typed = "const greet = (name) => `hi ${name}`; // ünï ☃\n";
  const keystrokes = [];
  let version = 0;
  for (const character of typed) {
    text += character;
    keystrokes.push(text);
    version += 1;
    alice.emit("changeFile", { roomId, fileId: MAIN, content: text, version, timestamp: Date.now() });
  }
  for (let i = 0; i < keystrokes.length; i += 1) {
    const update = keys("fileContentUpdate", await bob.take("fileContentUpdate"), ["fileId", "content", "userId", "userName"]);
    equal(`fileContentUpdate #${i + 1}`, { fileId: MAIN, content: keystrokes[i], userId: alice.id, userName: ALICE.name },
      { fileId: update.fileId, content: update.content, userId: update.userId, userName: update.userName });
  }

  step("Alice's autosaves: POST /files and POST /update with her text");
  const saved = await http("POST", `/api/sessions/${roomId}/files`, { fileId: MAIN, name: MAIN, content: text, timestamp: Date.now() });
  expectSuccess("POST /files", saved);
  equal("POST /files", { success: true, message: "File saved successfully", fileId: MAIN }, saved.json);
  expectSuccess("POST /update", await http("POST", `/api/sessions/${roomId}/update`, { code: text, language: "javascript", fileId: MAIN }));
  const missing = await http("POST", `/api/sessions/${roomId}/files`, { name: "no id" });
  equal("POST /files without fileId", [400, "Missing required fields"], [missing.status, missing.json.error]);

  step("Bob uploads a file and activates it -> Alice hears fileUploaded, its text, the switch");
  const upload = {
    roomId, fileId: "data.csv", name: "data.csv", mime: "text/csv", size: 11, content: "a,b\n1,2\n3,4",
    uploadedBy: BOB.userId, uploaderName: BOB.name, source: "local-upload", metadata: { lastModified: 1 },
  };
  bob.emit("uploadFile", upload);
  bob.emit("setActiveFile", { roomId, fileId: "data.csv" });
  const uploaded = await alice.take("fileUploaded");
  equal("fileUploaded", { fileId: "data.csv", name: "data.csv", mime: "text/csv", size: 11, uploadedBy: BOB.userId,
    uploaderName: BOB.name, source: "local-upload" }, uploaded);
  const uploadedText = keys("fileContentSnapshot", await alice.take("fileContentSnapshot"), ["fileId", "name", "content"]);
  equal("fileContentSnapshot of the upload", ["data.csv", upload.content], [uploadedText.fileId, uploadedText.content]);
  equal("activeFileChanged", { fileId: "data.csv" }, await alice.take("activeFileChanged"));
  await settle();
  equal("fileContentSnapshot to the uploader (it has the text)", 0, bob.count("fileContentSnapshot"));
  expectSuccess("the upload's POST /files", await http("POST", `/api/sessions/${roomId}/files`,
    { fileId: "data.csv", name: "data.csv", content: upload.content, mime: "text/csv", size: 11,
      uploadedBy: BOB.userId, uploaderName: BOB.name }));

  step("whiteboard: Alice opens it, draws, closes it -> Bob hears each");
  alice.emit("whiteboardOpened", { roomId });
  equal("whiteboardOpenedByUser", { userId: alice.id, userName: ALICE.name }, await bob.take("whiteboardOpenedByUser"));
  const drawing = { "shape:abc": { id: "shape:abc", typeName: "shape", type: "geo", x: 10, y: 20 } };
  alice.emit("whiteboardChange", { roomId, snapshot: drawing });
  equal("whiteboardUpdate", { snapshot: drawing }, await bob.take("whiteboardUpdate"));
  alice.emit("whiteboardClosed", { roomId });
  equal("whiteboardClosedByUser", { userId: alice.id, userName: ALICE.name }, await bob.take("whiteboardClosedByUser"));

  step("Bob chats -> Alice newMessage");
  bob.emit("chatMessage", { roomId, message: { id: `${Date.now()}`, userId: BOB.userId, userName: BOB.name, message: "uploaded it" } });
  const chat = await alice.take("newMessage");
  equal("newMessage", ["uploaded it", bob.id], [chat.message.message, chat.message.userId]);

  step("the meeting page: two sockets join-call, signal each other; one leaves");
  const first = await new Client("meeting 1", ["polling", "websocket"]).connect();
  const second = await new Client("meeting 2", ["polling", "websocket"]).connect();
  first.emit("join-call", roomId);
  equal("user-joined to the first", [first.id, [first.id]], await first.takeArgs("user-joined"));
  second.emit("join-call", roomId);
  equal("user-joined to the first (second joins)", [second.id, [first.id, second.id]], await first.takeArgs("user-joined"));
  equal("user-joined to the second", [second.id, [first.id, second.id]], await second.takeArgs("user-joined"));
  const sdp = JSON.stringify({ sdp: { type: "offer", sdp: "v=0\r\n" } });
  first.emit("signal", second.id, sdp);
  equal("signal", [first.id, sdp], await second.takeArgs("signal"));
  const secondId = second.id;
  second.close();
  equal("user-left", [secondId], await first.takeArgs("user-left"));
  first.close();
  await settle();
  for (const editor of [alice, bob]) {
    const meetingEvents = editor.log.filter(({ event }) => ["user-joined", "signal", "user-left"].includes(event));
    equal(`${editor.label}: meeting events reach no editor`, [], meetingEvents.map(({ event }) => event));
  }

  step("Bob reloads the page: Alice's list shows him once, with no departure");
  const bobTransport = bob.socket.io.engine.transport;
  if (bobTransport.name === "websocket") bobTransport.ws.terminate(); // the page goes away
  else bob.close();
  const reloaded = await new Client("Bob reloaded").connect();
  mount(reloaded, BOB);
  const bothAgain = [member(alice, ALICE.name, ALICE.userId), member(reloaded, BOB.name, BOB.userId)];
  const deadline = Date.now() + 2000;
  let users = alice.log.filter(({ event }) => event === "roomUsers").at(-1).data;
  while (JSON.stringify(users.map((u) => u.id).sort()) !== JSON.stringify(bothAgain.map((u) => u.id).sort())) {
    check(Date.now() < deadline, "Alice's list shows Alice and the reloaded Bob within 2 s", bothAgain, users);
    await settle(20);
    users = alice.log.filter(({ event }) => event === "roomUsers").at(-1).data;
  }
  check(!alice.log.some(({ event, data }) => event === "userLeft" && data.userName === BOB.name),
    "no userLeft for the reload", "<none>", "userLeft");

  step("GET /api/sessions/:roomId: code, files and whiteboard persisted");
  const final = await http("GET", `/api/sessions/${roomId}`);
  expectSuccess("final GET", final);
  const session = checkSession("final GET: session", final.json.session);
  equal("final code (main.js)", text, session.code);
  const files = session.files.map(({ fileId, name, content, mime }) => ({ fileId, name, content, mime }));
  const expectedFiles = [
    { fileId: MAIN, name: MAIN, content: text, mime: "text/plain" },
    { fileId: "data.csv", name: "data.csv", content: upload.content, mime: "text/csv" },
  ];
  equal("final files", expectedFiles, files);
  equal("final whiteboard", drawing, session.whiteboardElements);
  const one = await http("GET", `/api/sessions/${roomId}/files/data.csv`);
  equal("GET /files/:fileId", upload.content, one.json.file?.content);
  const listed = await http("GET", `/api/sessions/user/${BOB.userId}`);
  equal("fileCount in the recent sessions", 2, listed.json.sessions.find((s) => s.roomId === roomId)?.fileCount);
  report.expected = { code: text, files: expectedFiles, whiteboard: drawing };

  step("everyone leaves");
  for (const client of [alice, reloaded]) {
    client.emit("leaveRoom", { roomId });
  }
  await settle(100);
  alice.close();
  reloaded.close();
  bob.close();
  report.ok = true;
  report.durationMs = Date.now() - started;
}

main(run);
