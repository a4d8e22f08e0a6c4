#!/usr/bin/env node
// Plays the original client's typical wire session (see docs/protocol.md) with the official
// socket.io-client 4.8 against a running server, with two clients (Alice creates the room, Bob joins it), and checks every
// event and REST answer the protocol promises.
//
//   node session.mjs <serverUrl> [--room ROOMID] [--timeout SECONDS]
//
// Prints one JSON report on stdout. Exit codes: 0 all checks passed, 1 a check failed (the report
// says which step, what was expected and what arrived), 2 bad usage.
import { isDeepStrictEqual } from "node:util";
import { io } from "socket.io-client";

const ISO_MS_Z = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const ROOM_ID = /^[0-9A-Z]{1,8}$/;
const STEP_TIMEOUT_MS = 5000;
const CLIENT_TRANSPORTS = ["websocket", "polling"]; // what the original client passes to io()

// -- arguments -------------------------------------------------------------------------------

function usage(message) {
  process.stderr.write(`${message}\nusage: node session.mjs <serverUrl> [--room ROOMID] [--timeout SECONDS]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = { url: null, roomId: null, timeoutSeconds: 20 };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === "--room") options.roomId = argv[++i];
    else if (arg === "--timeout") options.timeoutSeconds = Number(argv[++i]);
    else if (arg.startsWith("--")) usage(`unknown option ${arg}`);
    else if (options.url === null) options.url = arg;
    else usage(`unexpected argument ${arg}`);
  }
  if (!options.url) usage("the server URL is required");
  try {
    new URL(options.url);
  } catch {
    usage(`not a URL: ${options.url}`);
  }
  options.url = options.url.replace(/\/+$/, "");
  if (options.roomId === null) options.roomId = newRoomId();
  if (!ROOM_ID.test(options.roomId)) usage("--room must be 1-8 characters of [0-9A-Z]");
  if (!(options.timeoutSeconds > 0)) usage("--timeout must be a positive number of seconds");
  return options;
}

function newRoomId() {
  // As the original client makes it: 8 characters of [0-9A-Z].
  const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  let id = "";
  for (let i = 0; i < 8; i += 1) id += alphabet[Math.floor(Math.random() * alphabet.length)];
  return id;
}

/** A fresh id (36^8 of them: never one in use) for a room that must not exist yet. */
function otherRoomId() {
  let id;
  do id = newRoomId(); while (id === options.roomId);
  return id;
}

// -- checks and the report -------------------------------------------------------------------

class Mismatch extends Error {
  constructor(step, what, expected, got) {
    super(`${step}: ${what}: expected ${show(expected)}, got ${show(got)}`);
    this.step = step;
    this.what = what;
    this.expected = expected;
    this.got = got;
  }
}

function show(value) {
  if (value === undefined) return "undefined (missing)";
  const text = typeof value === "string" && value.startsWith("<") ? value : JSON.stringify(value);
  return text.length > 400 ? `${text.slice(0, 400)}...` : text;
}

const options = parseArgs(process.argv.slice(2));
const report = {
  ok: false,
  server: options.url,
  roomId: options.roomId,
  checks: 0,
  steps: [],
  transports: {},
  extraKeys: {}, // keys the server sends beyond the protocol's (allowed; listed for reviewers)
  notes: [],
  expected: null, // the session state the run leaves behind, for a check after a restart
  error: null,
};
let currentStep = "start";

function step(name) {
  currentStep = name;
  report.steps.push(name);
}

function check(condition, what, expected, got) {
  report.checks += 1;
  if (!condition) throw new Mismatch(currentStep, what, expected, got);
}

function equal(what, expected, got) {
  check(isDeepStrictEqual(expected, got), what, expected, got);
}

function isPlainObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `value` is an object with every key of `keys`; extra keys are recorded, not refused. */
function keys(what, value, required) {
  check(isPlainObject(value), `${what} is an object`, "<an object>", value);
  const missing = required.filter((key) => !(key in value));
  check(missing.length === 0, `${what} has keys ${required.join(", ")}`, required, Object.keys(value));
  const extra = Object.keys(value).filter((key) => !required.includes(key));
  if (extra.length) report.extraKeys[what] = extra;
  return value;
}

function iso(what, value) {
  check(typeof value === "string" && ISO_MS_Z.test(value), `${what} is ISO-8601 with ms and Z`,
    "<YYYY-MM-DDTHH:MM:SS.mmmZ>", value);
  return Date.parse(value);
}

// -- Socket.IO clients that record everything they receive -----------------------------------

class Client {
  constructor(label, transports = CLIENT_TRANSPORTS) {
    this.label = label;
    this.log = []; // [{event, data}] in arrival order
    this.taken = new Map(); // event -> how many of them a step has consumed
    this.waiters = new Set();
    this.socket = io(options.url, {
      transports,
      reconnection: false, // a test must see a drop, not hide it
      forceNew: true,
      timeout: STEP_TIMEOUT_MS,
    });
    this.socket.onAny((event, ...args) => {
      this.log.push({ event, data: args[0], argc: args.length });
      for (const wake of this.waiters) wake();
    });
  }

  get id() {
    return this.socket.id;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Mismatch(currentStep, `${this.label} connects`, "connect", "no connect within 5 s")),
        STEP_TIMEOUT_MS,
      );
      this.socket.once("connect", () => {
        clearTimeout(timer);
        resolve(this);
      });
      this.socket.once("connect_error", (error) => {
        clearTimeout(timer);
        reject(new Mismatch(currentStep, `${this.label} connects`, "connect", `connect_error: ${error.message}`));
      });
    });
  }

  emit(event, data) {
    this.socket.emit(event, data);
  }

  /** The payload of the next not yet consumed `event` (waits up to STEP_TIMEOUT_MS). */
  async take(event) {
    const entry = await this.arrival(event);
    check(entry.argc === 1, `${this.label} got ${event} with one argument`, 1, entry.argc);
    return entry.data;
  }

  arrival(event) {
    const index = this.taken.get(event) ?? 0;
    const found = () => this.log.filter((entry) => entry.event === event)[index];
    return new Promise((resolve, reject) => {
      const done = (entry) => {
        this.waiters.delete(poll);
        clearTimeout(timer);
        this.taken.set(event, index + 1);
        resolve(entry);
      };
      const poll = () => {
        const entry = found();
        if (entry) done(entry);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(poll);
        const recent = this.log.slice(-8).map((entry) => entry.event);
        reject(new Mismatch(currentStep, `${this.label} receives ${event} #${index + 1}`,
          `<${event} within ${STEP_TIMEOUT_MS} ms>`, `<nothing; last events: ${recent.join(", ") || "none"}>`));
      }, STEP_TIMEOUT_MS);
      this.waiters.add(poll);
      poll();
    });
  }

  count(event) {
    return this.log.filter((entry) => entry.event === event).length;
  }

  positionOf(event, occurrence) {
    let seen = 0;
    for (let i = 0; i < this.log.length; i += 1) {
      if (this.log[i].event === event && ++seen === occurrence) return i;
    }
    return -1;
  }

  close() {
    this.socket.disconnect();
  }
}

/** Let in-flight events arrive before asserting that something did not. */
const settle = (ms = 300) => new Promise((resolve) => setTimeout(resolve, ms));

// -- REST ------------------------------------------------------------------------------------

async function http(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(options.url + path, { ...init, signal: AbortSignal.timeout(STEP_TIMEOUT_MS) });
  } catch (error) {
    const cause = error.cause ? `: ${error.cause.code ?? error.cause.message ?? error.cause}` : "";
    throw new Mismatch(currentStep, `${method} ${path}`, "<an HTTP answer>", `<${error.message}${cause}>`);
  }
  const type = response.headers.get("content-type") ?? "";
  const text = await response.text();
  check(type.startsWith("application/json"), `${method} ${path} answers JSON`, "application/json", type);
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Mismatch(currentStep, `${method} ${path} body`, "<JSON>", text);
  }
  return { status: response.status, json };
}

function expectError(what, answer, status, error) {
  equal(`${what} status`, status, answer.status);
  keys(`${what} body`, answer.json, ["error", "message"]);
  equal(`${what} error`, error, answer.json.error);
  check(typeof answer.json.message === "string", `${what} message is a string`, "<string>", answer.json.message);
}

function expectSuccess(what, answer, status = 200) {
  equal(`${what} status`, status, answer.status);
  equal(`${what} success`, true, answer.json.success);
}

function checkSession(what, session) {
  keys(what, session, ["roomId", "code", "language", "participants", "messages", "createdAt", "expiresAt", "lastActivity"]);
  equal(`${what}.roomId`, options.roomId, session.roomId);
  check(typeof session.code === "string", `${what}.code is a string`, "<string>", session.code);
  check(typeof session.language === "string", `${what}.language is a string`, "<string>", session.language);
  const created = iso(`${what}.createdAt`, session.createdAt);
  const expires = iso(`${what}.expiresAt`, session.expiresAt);
  iso(`${what}.lastActivity`, session.lastActivity);
  check(expires > created, `${what}.expiresAt after createdAt`, `> ${session.createdAt}`, session.expiresAt);
  check(Array.isArray(session.participants), `${what}.participants is an array`, "<array>", session.participants);
  session.participants.forEach((p, i) => {
    keys(`${what}.participants[]`, p, ["userId", "name", "joinedAt", "lastSeen"]);
    iso(`${what}.participants[${i}].joinedAt`, p.joinedAt);
    iso(`${what}.participants[${i}].lastSeen`, p.lastSeen);
  });
  check(Array.isArray(session.messages), `${what}.messages is an array`, "<array>", session.messages);
  session.messages.forEach((m, i) => {
    keys(`${what}.messages[]`, m, ["userId", "userName", "message", "timestamp"]);
    iso(`${what}.messages[${i}].timestamp`, m.timestamp);
  });
  return session;
}

// -- Socket.IO payload checks ----------------------------------------------------------------

function checkRoomUsers(what, users, expected) {
  check(Array.isArray(users), `${what} is a bare array`, "<array>", users);
  users.forEach((user, i) => {
    keys(`${what}[]`, user, ["id", "name", "userId", "joinedAt"]);
    iso(`${what}[${i}].joinedAt`, user.joinedAt);
  });
  const got = users.map(({ id, name, userId }) => ({ id, name, userId }));
  const sortById = (list) => [...list].sort((a, b) => a.id.localeCompare(b.id));
  equal(`${what} members`, sortById(expected), sortById(got));
}

function member(client, name, userId) {
  return { id: client.id, name, userId };
}

async function expectPresence(client, kind, other, name) {
  const event = kind === "joined" ? "userJoined" : "userLeft";
  const data = keys(`${event}`, await client.take(event), ["userId", "userName", "message"]);
  equal(`${event}.userId (the ${name}'s socket id)`, other.id, data.userId);
  equal(`${event}.userName`, name, data.userName);
  equal(`${event}.message`, `${name} ${kind} the room`, data.message);
}

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

function finish(code) {
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  process.exit(code);
}

const overall = setTimeout(() => {
  report.error = { step: currentStep, message: `overall timeout of ${options.timeoutSeconds} s at step "${currentStep}"` };
  process.stderr.write(`FAIL ${report.error.message}\n`);
  finish(1);
}, options.timeoutSeconds * 1000);

run().then(
  () => {
    clearTimeout(overall);
    process.stderr.write(`OK ${report.checks} checks in ${report.durationMs} ms (room ${roomId})\n`);
    finish(0);
  },
  (error) => {
    clearTimeout(overall);
    report.error = error instanceof Mismatch
      ? { step: error.step, what: error.what, expected: error.expected, got: error.got, message: error.message }
      : { step: currentStep, message: String(error?.stack ?? error) };
    process.stderr.write(`FAIL ${report.error.message}\n`);
    finish(1);
  },
);
