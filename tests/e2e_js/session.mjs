#!/usr/bin/env node
// Plays the older client generation's typical wire session (see docs/protocol.md) with the
// official socket.io-client 4.8 against a running server, with two clients (Alice creates the
// room, Bob joins it), and checks every event and REST answer the protocol promises, a call
// and a raised hand included.
//
//   node session.mjs <serverUrl> [--room ROOMID] [--timeout SECONDS]
//
// Prints one JSON report on stdout (see harness.mjs for the exit codes).
import {
  Client,
  check,
  checkRoomUsers,
  checkSession,
  equal,
  expectError,
  expectPresence,
  expectSuccess,
  http,
  iso,
  keys,
  main,
  member,
  options,
  otherRoomId,
  report,
  settle,
  step,
} from "./harness.mjs";

// -- the session -----------------------------------------------------------------------------

const ALICE = { name: "Alice", userId: "e2e-user-alice" };
const BOB = { name: "Bob", userId: "e2e-user-bob" };
const roomId = options.roomId;

async function run() {
  const started = Date.now();

  step("GET /api/health");
  const health = await http("GET", "/api/health");
  equal("health status", 200, health.status);
  keys("health", health.json, ["status", "message", "timestamp"]);
  equal("health.status", "OK", health.json.status);
  iso("health.timestamp", health.json.timestamp);

  // Alice creates the room: she makes its id, joins over the socket first, then restores.
  step("Alice connects");
  const alice = await new Client("Alice").connect();
  report.transports.alice = alice.socket.io.engine.transport.name;

  step("Alice joinRoom (the creator joins before the session exists)");
  alice.emit("joinRoom", { roomId, userName: ALICE.name, userId: ALICE.userId });
  checkRoomUsers("roomUsers (Alice alone)", await alice.take("roomUsers"), [member(alice, ALICE.name, ALICE.userId)]);

  step("Alice requestCodeState + languageChange (on mount)");
  alice.emit("requestCodeState", { roomId });
  alice.emit("languageChange", { roomId, language: "javascript" });

  step("Alice GET /api/sessions/:roomId before create");
  const early = await http("GET", `/api/sessions/${roomId}`);
  if (early.status === 404) {
    expectError("GET before create", early, 404, "Session not found");
    report.notes.push("GET before create answered 404 (as the original server)");
  } else {
    expectSuccess("GET before create", early);
    checkSession("GET before create: session", early.json.session);
    report.notes.push("GET before create answered 200: the join made the session");
  }

  step("Alice POST /api/sessions/create (after her join)");
  const initialCode = "// Alice's room\n";
  const created = await http("POST", "/api/sessions/create", {
    roomId,
    creatorName: ALICE.name,
    creatorUserId: ALICE.userId,
    code: initialCode,
    language: "javascript",
  });
  expectSuccess("create", created, 201);
  keys("create", created.json, ["success", "message", "session"]);
  keys("create.session", created.json.session, ["roomId", "expiresAt", "createdAt"]);
  equal("create.session.roomId", roomId, created.json.session.roomId);
  const createdAt = iso("create.session.createdAt", created.json.session.createdAt);
  const expiresAt = iso("create.session.expiresAt", created.json.session.expiresAt);
  check(expiresAt > createdAt, "create.session.expiresAt after createdAt", `> ${created.json.session.createdAt}`,
    created.json.session.expiresAt);

  step("POST /api/sessions/create again and without fields");
  expectError("create twice", await http("POST", "/api/sessions/create", { roomId, creatorName: ALICE.name }),
    400, "Session already exists");
  expectError("create without fields", await http("POST", "/api/sessions/create", { creatorName: ALICE.name }),
    400, "Missing required fields");

  // Bob joins with the room id.
  step("Bob connects and joinRoom");
  const bob = await new Client("Bob").connect();
  report.transports.bob = bob.socket.io.engine.transport.name;
  bob.emit("joinRoom", { roomId, userName: BOB.name, userId: BOB.userId });
  const both = [member(alice, ALICE.name, ALICE.userId), member(bob, BOB.name, BOB.userId)];
  checkRoomUsers("roomUsers to Bob (both)", await bob.take("roomUsers"), both);
  checkRoomUsers("roomUsers to Alice (both)", await alice.take("roomUsers"), both);
  await expectPresence(alice, "joined", bob, BOB.name);

  step("Bob requestCodeState -> Alice codeStateRequest");
  bob.emit("requestCodeState", { roomId });
  const request = keys("codeStateRequest", await alice.take("codeStateRequest"), ["requesterId"]);
  equal("codeStateRequest.requesterId (Bob's socket id)", bob.id, request.requesterId);

  step("Alice sendCodeState -> Bob receiveCodeState");
  let aliceCode = initialCode;
  alice.emit("sendCodeState", { roomId, code: aliceCode, language: "javascript", targetUserId: request.requesterId });
  const state = keys("receiveCodeState", await bob.take("receiveCodeState"), ["code", "language"]);
  equal("receiveCodeState.code", aliceCode, state.code);
  equal("receiveCodeState.language", "javascript", state.language);

  step("Bob languageChange (on mount, the room's language) -> nothing");
  const languagesBefore = alice.count("languageUpdate");
  bob.emit("languageChange", { roomId, language: "javascript" });
  await settle();
  equal("languageUpdate to Alice for an unchanged language", languagesBefore, alice.count("languageUpdate"));

  step("Bob GET /api/sessions/:roomId (restore)");
  const restored = await http("GET", `/api/sessions/${roomId}`);
  expectSuccess("Bob's GET", restored);
  const restoredSession = checkSession("Bob's GET: session", restored.json.session);
  equal("Bob's GET: code (create's code)", initialCode, restoredSession.code);
  equal("Bob's GET: language", "javascript", restoredSession.language);
  equal("Bob's GET: messages", [], restoredSession.messages);

  step("Alice languageChange python -> Bob languageUpdate");
  alice.emit("languageChange", { roomId, language: "python" });
  const toPython = keys("languageUpdate", await bob.take("languageUpdate"), ["language", "userId", "userName"]);
  equal("languageUpdate.language", "python", toPython.language);
  equal("languageUpdate.userId (Alice's socket id)", alice.id, toPython.userId);
  equal("languageUpdate.userName", ALICE.name, toPython.userName);

  step("Alice codeChange per keystroke -> Bob codeUpdate each");
  const typed = "def greet(name):\n    return f'hi {name}' # ünï ☃\n";
  const keystrokes = [];
  for (const character of typed) {
    aliceCode += character;
    keystrokes.push(aliceCode);
    alice.emit("codeChange", { roomId, code: aliceCode, language: "python" });
  }
  for (let i = 0; i < keystrokes.length; i += 1) {
    const update = keys("codeUpdate", await bob.take("codeUpdate"), ["code", "language", "userId", "userName", "timestamp"]);
    equal(`codeUpdate #${i + 1}.code`, keystrokes[i], update.code);
    equal(`codeUpdate #${i + 1}.language`, "python", update.language);
    equal(`codeUpdate #${i + 1}.userId (Alice's socket id)`, alice.id, update.userId);
    equal(`codeUpdate #${i + 1}.userName`, ALICE.name, update.userName);
    iso(`codeUpdate #${i + 1}.timestamp`, update.timestamp);
  }

  step("Alice POST /api/sessions/:roomId/update {code, language} (debounced save)");
  const updated = await http("POST", `/api/sessions/${roomId}/update`, { code: aliceCode, language: "python" });
  expectSuccess("update", updated);
  keys("update", updated.json, ["success", "message"]);
  expectError("update of an unknown room", await http("POST", `/api/sessions/${otherRoomId()}/update`, { code: "x" }),
    404, "Session not found");

  step("Alice chatMessage (object form) -> Bob newMessage");
  const sentAt = new Date().toISOString();
  const aliceMessage = { id: `${Date.now()}`, userId: ALICE.userId, userName: ALICE.name, message: "Hello Bob", timestamp: sentAt };
  alice.emit("chatMessage", { roomId, message: aliceMessage });
  const toBob = keys("newMessage", await bob.take("newMessage"), ["message"]);
  const wireToBob = keys("newMessage.message", toBob.message, ["id", "message", "userId", "userName", "timestamp"]);
  equal("newMessage.message.message (the text, unwrapped)", "Hello Bob", wireToBob.message);
  equal("newMessage.message.userId (Alice's socket id)", alice.id, wireToBob.userId);
  equal("newMessage.message.userName", ALICE.name, wireToBob.userName);
  iso("newMessage.message.timestamp", wireToBob.timestamp);
  check(["string", "number"].includes(typeof wireToBob.id), "newMessage.message.id is a string or number", "<id>", wireToBob.id);

  step("Bob chatMessage (string form) -> Alice newMessage");
  bob.emit("chatMessage", { roomId, message: "Hi Alice" });
  const toAlice = keys("newMessage", await alice.take("newMessage"), ["message"]);
  const wireToAlice = keys("newMessage.message", toAlice.message, ["id", "message", "userId", "userName", "timestamp"]);
  equal("newMessage.message.message", "Hi Alice", wireToAlice.message);
  equal("newMessage.message.userId (Bob's socket id)", bob.id, wireToAlice.userId);
  equal("newMessage.message.userName", BOB.name, wireToAlice.userName);
  iso("newMessage.message.timestamp", wireToAlice.timestamp);

  step("Alice cursorMove -> Bob cursorUpdate");
  const position = { lineNumber: 3, column: 7 };
  alice.emit("cursorMove", { roomId, position });
  const cursor = keys("cursorUpdate", await bob.take("cursorUpdate"), ["position", "userId", "userName"]);
  equal("cursorUpdate.position", position, cursor.position);
  equal("cursorUpdate.userId (Alice's socket id)", alice.id, cursor.userId);
  equal("cursorUpdate.userName", ALICE.name, cursor.userName);

  step("Alice userTyping / userStoppedTyping -> Bob userIsTyping / userStoppedTyping");
  alice.emit("userTyping", { roomId });
  const typing = keys("userIsTyping", await bob.take("userIsTyping"), ["userId", "userName"]);
  equal("userIsTyping", { userId: alice.id, userName: ALICE.name }, { userId: typing.userId, userName: typing.userName });
  alice.emit("userStoppedTyping", { roomId });
  const stopped = keys("userStoppedTyping", await bob.take("userStoppedTyping"), ["userId", "userName"]);
  equal("userStoppedTyping", { userId: alice.id, userName: ALICE.name }, { userId: stopped.userId, userName: stopped.userName });

  step("a call: Alice and Bob ready -> each hears the other, Bob gets the existing participant");
  alice.emit("userReadyForCall", { roomId });
  const aliceReady = keys("userReadyForCall", await bob.take("userReadyForCall"), ["userId", "userName", "isReconnect"]);
  equal("userReadyForCall (Alice)", { userId: alice.id, userName: ALICE.name, isReconnect: false }, aliceReady);
  bob.emit("userReadyForCall", { roomId });
  const existing = keys("existingCallParticipants", await bob.take("existingCallParticipants"), ["participants", "isReconnect"]);
  equal("existingCallParticipants.participants", [{ userId: alice.id, userName: ALICE.name }], existing.participants);
  const bobReady = keys("userReadyForCall", await alice.take("userReadyForCall"), ["userId", "userName", "isReconnect"]);
  equal("userReadyForCall (Bob)", { userId: bob.id, userName: BOB.name, isReconnect: false }, bobReady);

  step("a call: offer, answer and ICE candidates reach only their target, with `from`");
  const offer = { type: "offer", sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" };
  alice.emit("webrtc-offer", { offer, to: bob.id, roomId, isRestart: false });
  const gotOffer = keys("webrtc-offer", await bob.take("webrtc-offer"), ["offer", "from", "userName", "roomId"]);
  equal("webrtc-offer", { offer, from: alice.id, userName: ALICE.name, roomId }, gotOffer);
  const answer = { type: "answer", sdp: "v=0\r\n" };
  bob.emit("webrtc-answer", { answer, to: alice.id, roomId, userName: BOB.name });
  const gotAnswer = keys("webrtc-answer", await alice.take("webrtc-answer"), ["answer", "from", "userName", "roomId"]);
  equal("webrtc-answer", { answer, from: bob.id, userName: BOB.name, roomId }, gotAnswer);
  const candidate = { candidate: "candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host", sdpMid: "0", sdpMLineIndex: 0, usernameFragment: "abc" };
  bob.emit("ice-candidate", { candidate, to: alice.id, roomId });
  const gotCandidate = keys("ice-candidate", await alice.take("ice-candidate"), ["candidate", "from", "userName", "roomId"]);
  equal("ice-candidate", { candidate, from: bob.id, userName: BOB.name, roomId }, gotCandidate);
  alice.emit("media-track-ended", { to: bob.id, kind: "video", roomId });

  step("screen share, raised hands and the call status");
  alice.emit("screenShareStarted", { roomId });
  equal("userScreenShareStarted", { userId: alice.id, userName: ALICE.name }, await bob.take("userScreenShareStarted"));
  alice.emit("userReadyForScreenShare", { roomId });
  equal("userReadyForScreenShare", { userId: alice.id, userName: ALICE.name }, await bob.take("userReadyForScreenShare"));
  alice.emit("screenShareStopped", { roomId });
  equal("userScreenShareStopped", { userId: alice.id, userName: ALICE.name }, await bob.take("userScreenShareStopped"));
  const raisedAt = Date.now();
  bob.emit("raiseHand", { roomId, timestamp: raisedAt });
  equal("userRaisedHand", { userId: bob.id, userName: BOB.name, timestamp: raisedAt }, await alice.take("userRaisedHand"));
  bob.emit("lowerHand", { roomId });
  equal("userLoweredHand", { userId: bob.id, userName: BOB.name }, await alice.take("userLoweredHand"));
  bob.emit("checkRoomCallStatus", { roomId });
  const status = keys("roomCallStatus", await bob.take("roomCallStatus"), ["roomId", "hasActiveCall", "participantCount", "participants"]);
  equal("roomCallStatus", { roomId, hasActiveCall: true, participantCount: 2, participants: [{ userId: alice.id, userName: ALICE.name }] }, status);

  step("Bob userLeftCall -> Alice callParticipantsCount, then userLeftCall");
  bob.emit("userLeftCall", { roomId });
  equal("callParticipantsCount", { roomId, count: 1 }, await alice.take("callParticipantsCount"));
  equal("userLeftCall", { userId: bob.id, userName: BOB.name }, await alice.take("userLeftCall"));
  await settle();
  equal("events for the media-track-ended nobody serves", 0, bob.count("media-track-ended"));

  step("Bob leaveRoom -> Alice roomUsers then userLeft");
  const bobId = bob.id;
  bob.emit("leaveRoom", { roomId });
  checkRoomUsers("roomUsers after Bob left", await alice.take("roomUsers"), [member(alice, ALICE.name, ALICE.userId)]);
  await expectPresence(alice, "left", { id: bobId }, BOB.name);
  check(alice.positionOf("roomUsers", 3) < alice.positionOf("userLeft", 1), "roomUsers arrives before userLeft",
    "roomUsers, userLeft", alice.log.map((entry) => entry.event).filter((e) => e === "roomUsers" || e === "userLeft"));
  bob.close();

  // The other way out: a socket that drops without leaveRoom (closed tab), on long-polling.
  step("Bob again (polling) joins, then disconnects without leaveRoom");
  const tab = await new Client("Bob's second tab", ["polling"]).connect();
  report.transports.bobSecondTab = tab.socket.io.engine.transport.name;
  tab.emit("joinRoom", { roomId, userName: BOB.name, userId: BOB.userId });
  const again = [member(alice, ALICE.name, ALICE.userId), member(tab, BOB.name, BOB.userId)];
  checkRoomUsers("roomUsers to the second tab", await tab.take("roomUsers"), again);
  checkRoomUsers("roomUsers to Alice (second tab)", await alice.take("roomUsers"), again);
  await expectPresence(alice, "joined", tab, BOB.name);
  const tabId = tab.id;
  tab.close();
  checkRoomUsers("roomUsers after the disconnect", await alice.take("roomUsers"), [member(alice, ALICE.name, ALICE.userId)]);
  await expectPresence(alice, "left", { id: tabId }, BOB.name);

  step("the others-only rule: nobody got their own events, nor any error");
  await settle();
  for (const client of [alice, bob, tab]) {
    const own = client.log.filter(({ event, data }) => {
      const author = event === "newMessage" ? data?.message?.userId
        : event === "codeStateRequest" ? data?.requesterId
          : ["codeUpdate", "languageUpdate", "cursorUpdate", "userIsTyping", "userStoppedTyping", "userJoined", "userLeft"]
            .includes(event) ? data?.userId : undefined;
      return author !== undefined && author === (client === alice ? alice.id : client === bob ? bobId : tabId);
    });
    equal(`${client.label}'s own events echoed back`, [], own.map(({ event }) => event));
    const errors = client.log.filter(({ event }) => event === "error" || event === "connect_error");
    equal(`${client.label}'s error events`, [], errors.map(({ data }) => data));
  }
  equal("codeUpdate events Bob received (one per keystroke; the unchanged REST update adds none)",
    keystrokes.length, bob.count("codeUpdate"));
  equal("newMessage events Alice received", 1, alice.count("newMessage"));
  equal("newMessage events Bob received", 1, bob.count("newMessage"));

  step("GET /api/sessions/:roomId: the persisted state");
  const final = await http("GET", `/api/sessions/${roomId}`);
  expectSuccess("final GET", final);
  const session = checkSession("final GET: session", final.json.session);
  equal("final code", aliceCode, session.code);
  equal("final language", "python", session.language);
  const messages = session.messages.map(({ userId, userName, message }) => ({ userId, userName, message }));
  const expectedMessages = [
    { userId: ALICE.userId, userName: ALICE.name, message: "Hello Bob" },
    { userId: BOB.userId, userName: BOB.name, message: "Hi Alice" },
  ];
  equal("final messages (persisted with app user ids)", expectedMessages, messages);
  const participants = session.participants
    .map(({ userId, name }) => ({ userId, name }))
    .sort((a, b) => a.name.localeCompare(b.name));
  const expectedParticipants = [{ userId: ALICE.userId, name: ALICE.name }, { userId: BOB.userId, name: BOB.name }];
  equal("final participants", expectedParticipants, participants);
  report.expected = { code: aliceCode, language: "python", messages: expectedMessages, participants: expectedParticipants };

  step("GET /api/sessions/user/:userId");
  const listed = await http("GET", `/api/sessions/user/${BOB.userId}`);
  expectSuccess("user sessions", listed);
  check(Array.isArray(listed.json.sessions), "sessions is an array", "<array>", listed.json.sessions);
  const mine = listed.json.sessions.find((s) => s.roomId === roomId);
  check(mine !== undefined, "Bob's sessions include the room", roomId, listed.json.sessions.map((s) => s.roomId));
  keys("sessions[]", mine, ["roomId", "creatorName", "participantCount", "language", "createdAt", "expiresAt", "lastActivity"]);
  equal("sessions[].creatorName", ALICE.name, mine.creatorName);
  equal("sessions[].participantCount", 2, mine.participantCount);
  equal("sessions[].language", "python", mine.language);
  for (const field of ["createdAt", "expiresAt", "lastActivity"]) iso(`sessions[].${field}`, mine[field]);

  step("unknown session, unknown endpoint, DELETE of a scratch session");
  expectError("GET of an unknown room", await http("GET", `/api/sessions/${otherRoomId()}`), 404, "Session not found");
  expectError("unknown endpoint", await http("GET", "/api/no-such-endpoint"), 404, "Endpoint not found");
  const scratch = otherRoomId();
  expectSuccess("create scratch", await http("POST", "/api/sessions/create", { roomId: scratch, creatorName: BOB.name }), 201);
  const deleted = await http("DELETE", `/api/sessions/${scratch}`);
  expectSuccess("DELETE", deleted);
  keys("DELETE", deleted.json, ["success", "message"]);
  expectError("GET after DELETE", await http("GET", `/api/sessions/${scratch}`), 404, "Session not found");
  expectError("DELETE twice", await http("DELETE", `/api/sessions/${scratch}`), 404, "Session not found");

  step("Alice leaveRoom and disconnect");
  alice.emit("leaveRoom", { roomId });
  await settle(100);
  alice.close();

  report.ok = true;
  report.durationMs = Date.now() - started;
}


main(run);
