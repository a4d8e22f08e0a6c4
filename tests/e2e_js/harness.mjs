// The harness the client session scripts share: arguments, checks, a JSON report, recording
// Socket.IO clients (the official socket.io-client) and REST calls. A script calls
// `main(run)` with its session; `main` prints the report and exits 0 (all checks passed),
// 1 (a check failed: the report says which step, what was expected and what arrived) or 2
// (bad usage).
import { isDeepStrictEqual } from "node:util";
import { io } from "socket.io-client";

const ISO_MS_Z = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const ROOM_ID = /^[0-9A-Z]{1,8}$/;
const STEP_TIMEOUT_MS = 5000;
const CLIENT_TRANSPORTS = ["websocket", "polling"]; // what the original client passes to io()

// -- arguments -------------------------------------------------------------------------------

function usage(message) {
  process.stderr.write(`${message}\nusage: node <session script> <serverUrl> [--room ROOMID] [--timeout SECONDS]\n`);
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
export function otherRoomId() {
  let id;
  do id = newRoomId(); while (id === options.roomId);
  return id;
}

// -- checks and the report -------------------------------------------------------------------

export class Mismatch extends Error {
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

export const options = parseArgs(process.argv.slice(2));
export const report = {
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
export let currentStep = "start";

export function step(name) {
  currentStep = name;
  report.steps.push(name);
}

export function check(condition, what, expected, got) {
  report.checks += 1;
  if (!condition) throw new Mismatch(currentStep, what, expected, got);
}

export function equal(what, expected, got) {
  check(isDeepStrictEqual(expected, got), what, expected, got);
}

function isPlainObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `value` is an object with every key of `keys`; extra keys are recorded, not refused. */
export function keys(what, value, required) {
  check(isPlainObject(value), `${what} is an object`, "<an object>", value);
  const missing = required.filter((key) => !(key in value));
  check(missing.length === 0, `${what} has keys ${required.join(", ")}`, required, Object.keys(value));
  const extra = Object.keys(value).filter((key) => !required.includes(key));
  if (extra.length) report.extraKeys[what] = extra;
  return value;
}

export function iso(what, value) {
  check(typeof value === "string" && ISO_MS_Z.test(value), `${what} is ISO-8601 with ms and Z`,
    "<YYYY-MM-DDTHH:MM:SS.mmmZ>", value);
  return Date.parse(value);
}

// -- Socket.IO clients that record everything they receive -----------------------------------

export class Client {
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
      this.log.push({ event, data: args[0], args, argc: args.length });
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

  emit(event, ...args) {
    this.socket.emit(event, ...args);
  }

  /** The payload of the next not yet consumed `event` (waits up to STEP_TIMEOUT_MS). */
  async take(event) {
    const entry = await this.arrival(event);
    check(entry.argc === 1, `${this.label} got ${event} with one argument`, 1, entry.argc);
    return entry.data;
  }

  /** The arguments of the next not yet consumed `event` (events with positional arguments). */
  async takeArgs(event) {
    return (await this.arrival(event)).args;
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
export const settle = (ms = 300) => new Promise((resolve) => setTimeout(resolve, ms));

// -- REST ------------------------------------------------------------------------------------

export async function http(method, path, body) {
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

export function expectError(what, answer, status, error) {
  equal(`${what} status`, status, answer.status);
  keys(`${what} body`, answer.json, ["error", "message"]);
  equal(`${what} error`, error, answer.json.error);
  check(typeof answer.json.message === "string", `${what} message is a string`, "<string>", answer.json.message);
}

export function expectSuccess(what, answer, status = 200) {
  equal(`${what} status`, status, answer.status);
  equal(`${what} success`, true, answer.json.success);
}

export function checkSession(what, session) {
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

export function checkRoomUsers(what, users, expected) {
  check(Array.isArray(users), `${what} is a bare array`, "<array>", users);
  users.forEach((user, i) => {
    keys(`${what}[]`, user, ["id", "name", "userId", "joinedAt"]);
    iso(`${what}[${i}].joinedAt`, user.joinedAt);
  });
  const got = users.map(({ id, name, userId }) => ({ id, name, userId }));
  const sortById = (list) => [...list].sort((a, b) => a.id.localeCompare(b.id));
  equal(`${what} members`, sortById(expected), sortById(got));
}

export function member(client, name, userId) {
  return { id: client.id, name, userId };
}

export async function expectPresence(client, kind, other, name) {
  const event = kind === "joined" ? "userJoined" : "userLeft";
  const data = keys(`${event}`, await client.take(event), ["userId", "userName", "message"]);
  equal(`${event}.userId (the ${name}'s socket id)`, other.id, data.userId);
  equal(`${event}.userName`, name, data.userName);
  equal(`${event}.message`, `${name} ${kind} the room`, data.message);
}

// -- running a session --------------------------------------------------------------------

function finish(code) {
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  process.exit(code);
}

export function main(run) {
  const overall = setTimeout(() => {
    report.error = { step: currentStep, message: `overall timeout of ${options.timeoutSeconds} s at step "${currentStep}"` };
    process.stderr.write(`FAIL ${report.error.message}\n`);
    finish(1);
  }, options.timeoutSeconds * 1000);

  run().then(
    () => {
      clearTimeout(overall);
      process.stderr.write(`OK ${report.checks} checks in ${report.durationMs} ms (room ${options.roomId})\n`);
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
}
