#!/usr/bin/env node
// Socket.IO load generator for the collaborative-editing protocol.
//
// N rooms x M clients (websocket transport only, one engine.io connection per
// client). In every room client 0 is the typist: it sends `codeChange` with the
// FULL text (default 2 KB) at --rate changes/s; the text starts with a marker
// carrying the send time (process.hrtime, CLOCK_MONOTONIC, ms), so every other
// client of the room computes end-to-end latency from the `codeUpdate` it gets.
// Optional chat (--chat-rate msgs/s/room, sent by client 1) is measured the
// same way through `newMessage`.
//
// Standalone (one run, prints one JSON object, exits):
//   node gen.mjs --url http://127.0.0.1:5055 --rooms 50 --clients 4 --rate 10 \
//                --size 2048 --warmup 2 --seconds 10
// Several server processes (cluster mode): --urls U1,U2,... instead of --url; client i
// of every room connects to urls[i % n], so each room is spread over the processes and
// its typist (client 0) is on the first.
//
// Controlled by scripts/bench.py (--control): prints JSON lines on stdout
// ({"event":"ready"...}, {"event":"result"...}) and reads JSON commands on stdin:
//   {"cmd":"run","rate":10,"chatRate":0,"warmup":2,"seconds":10,"drain":3}
//   {"cmd":"quit"}            (stdin EOF = quit as well)
// Several generator processes can share one benchmark: each gets a slice of
// rooms (--room-offset) and bench.py merges their latency histograms.
//
// Every phase is bounded: connection (--connect-timeout), each run
// (warmup + seconds + drain) and the whole process (--max-seconds, hard exit).
import { io } from "socket.io-client";
import readline from "node:readline";

// ---------------------------------------------------------------- arguments
const DEFAULTS = {
  url: "http://127.0.0.1:5055",
  urls: "", // comma-separated; when set, client i of a room connects to urls[i % n]
  path: "/socket.io/",
  rooms: 10,
  clients: 4,
  "room-offset": 0,
  rate: 10,
  "chat-rate": 0,
  size: 2048,
  warmup: 2,
  seconds: 5,
  drain: 3,
  "connect-batch": 100,
  "connect-timeout": 20,
  "join-timeout": 10,
  "max-seconds": 0, // 0 = computed
  "run-id": "",
  language: "javascript",
};
const FLAGS = new Set(["control", "no-join", "no-deflate", "quiet"]);

function parseArgs(argv) {
  const o = { ...DEFAULTS };
  for (const f of FLAGS) o[f] = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-h" || a === "--help") {
      console.log(
        "usage: node gen.mjs [--url U | --urls U1,U2,..] [--rooms N] [--clients M] [--rate R] [--chat-rate C]\n" +
          "  [--size BYTES] [--warmup S] [--seconds S] [--drain S] [--room-offset K]\n" +
          "  [--connect-batch B] [--connect-timeout S] [--join-timeout S] [--max-seconds S]\n" +
          "  [--run-id ID] [--path /socket.io/] [--control] [--no-join] [--no-deflate]\n" +
          "defaults: " + JSON.stringify(DEFAULTS),
      );
      process.exit(0);
    }
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
    const k = a.slice(2);
    if (FLAGS.has(k)) {
      o[k] = true;
      continue;
    }
    if (!(k in DEFAULTS)) throw new Error(`unknown option ${a}`);
    const v = argv[++i];
    if (v === undefined) throw new Error(`missing value for ${a}`);
    o[k] = typeof DEFAULTS[k] === "number" ? Number(v) : v;
    if (typeof DEFAULTS[k] === "number" && !Number.isFinite(o[k])) throw new Error(`bad number for ${a}`);
  }
  return o;
}

const opt = parseArgs(process.argv.slice(2));
const RUN_ID = opt["run-id"] || Math.random().toString(36).slice(2, 8);
const M = Math.max(1, Math.floor(opt.clients));
const N = Math.max(0, Math.floor(opt.rooms));
const ROOM0 = Math.floor(opt["room-offset"]);
const URLS = opt.urls
  ? opt.urls.split(",").map((u) => u.trim()).filter((u) => u)
  : [opt.url];
if (URLS.length === 0) throw new Error("--urls names no url");

const maxSeconds =
  opt["max-seconds"] > 0
    ? opt["max-seconds"]
    : opt.control
      ? 900
      : opt["connect-timeout"] * 2 + opt["join-timeout"] + opt.warmup + opt.seconds + opt.drain + 30;
const hardTimer = setTimeout(() => {
  emitLine({ event: "error", error: `hard deadline of ${maxSeconds}s reached` });
  process.exit(3);
}, maxSeconds * 1000);
hardTimer.unref();

// ---------------------------------------------------------------- helpers
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function emitLine(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}
function log(msg) {
  if (!opt.quiet) process.stderr.write(`[gen ${RUN_ID}@${ROOM0}] ${msg}\n`);
}

// log-bucket latency histogram: bucket i covers (BASE*G^(i-1), BASE*G^i] ms
const H_BASE = 0.001;
const H_G = 1.01;
const H_LOG = Math.log(H_G);
const H_N = 3000;
class Hist {
  constructor() {
    this.b = new Uint32Array(H_N);
    this.n = 0;
    this.sum = 0;
    this.max = 0;
  }
  add(ms) {
    if (ms < 0) ms = 0; // clocks are monotonic; guard anyway
    let i = ms <= H_BASE ? 0 : Math.ceil(Math.log(ms / H_BASE) / H_LOG);
    if (i >= H_N) i = H_N - 1;
    this.b[i]++;
    this.n++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }
  pct(p) {
    if (this.n === 0) return null;
    const target = Math.ceil((p / 100) * this.n);
    let c = 0;
    for (let i = 0; i < H_N; i++) {
      c += this.b[i];
      if (c >= target) return Math.min(H_BASE * Math.pow(H_G, i), this.max);
    }
    return this.max;
  }
  sparse() {
    const out = [];
    for (let i = 0; i < H_N; i++) if (this.b[i]) out.push([i, this.b[i]]);
    return out;
  }
  summary() {
    const r = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
    return {
      n: this.n,
      p50: r(this.pct(50)),
      p90: r(this.pct(90)),
      p99: r(this.pct(99)),
      max: r(this.n ? this.max : null),
      mean: r(this.n ? this.sum / this.n : null),
    };
  }
}

// ---------------------------------------------------------------- state
const rooms = []; // {idx, roomId, clients: [client], typist, chatter, padding}
const counters = { connectErrors: 0, connectErrorSample: null, disconnects: 0, joinTimeouts: 0 };
let step = null; // current measurement step
let stepSeq = 0;
let strayEvents = 0; // codeUpdate/newMessage without our marker or from an old step
// events other than the protocol's usual ones (e.g. an "error" the server emits
// when it refuses a join): name -> {count, sample}
const KNOWN_EVENTS = new Set(["codeUpdate", "newMessage", "roomUsers", "userJoined", "userLeft"]);
const otherEvents = {};
function onOtherEvent(name, ...args) {
  if (KNOWN_EVENTS.has(name)) return;
  const e = otherEvents[name] || (otherEvents[name] = { count: 0, sample: null });
  e.count++;
  if (e.sample === null) {
    try {
      e.sample = JSON.stringify(args).slice(0, 300);
    } catch {
      e.sample = "?";
    }
  }
}

function makePadding(room, size) {
  // code-looking filler so the payload resembles an edited source file
  let s = "";
  let line = 0;
  while (s.length < size + 100) {
    s += `function f${room}_${line}(a, b) { return a * ${line} + b; } // line ${line}\n`;
    line++;
  }
  return s;
}

function onCodeUpdate(client, d) {
  const c = d && d.code;
  const st = step;
  if (typeof c !== "string" || !st || !c.startsWith(st.prefix)) {
    strayEvents++;
    return;
  }
  // header: /*lb:<run>:<step>:<room>:<seq>:<tsms>:<inWin>*/ ; parts = [room, seq, ts, inWin]
  const end = c.indexOf("*/", st.prefix.length);
  const parts = c.slice(st.prefix.length, end).split(":");
  if (d.userId === client.userId) {
    st.selfEcho++;
    return;
  }
  if (parts[3] !== "1") return; // outside the measure window
  st.received++;
  st.hist.add(nowMs() - Number(parts[2]));
}

function onNewMessage(client, d) {
  const st = step;
  const m = d && d.message;
  const text = m && m.message;
  if (typeof text !== "string" || !st || !text.startsWith(st.prefix)) {
    strayEvents++;
    return;
  }
  if (m.userId === client.userId) {
    st.chatSelfEcho++;
    return;
  }
  // text: /*lb:<run>:<step>:<tsms>:<inWin>: hello ... ; parts = [ts, inWin, ...]
  const parts = text.slice(st.prefix.length).split(":", 2);
  if (parts[1] !== "1") return;
  st.chatReceived++;
  st.chatHist.add(nowMs() - Number(parts[0]));
}

function newClient(room, i) {
  const userId = `lb-${RUN_ID}-${room.idx}-${i}`;
  const client = { userId, userName: `bench${room.idx}_${i}`, socket: null, connected: false, joined: false };
  const socket = io(URLS[i % URLS.length], {
    path: opt.path,
    transports: ["websocket"],
    forceNew: true, // one engine.io connection per client (no multiplexing)
    reconnection: false,
    timeout: opt["connect-timeout"] * 1000,
    perMessageDeflate: opt["no-deflate"] ? false : { threshold: 1024 },
  });
  client.socket = socket;
  socket.on("codeUpdate", (d) => onCodeUpdate(client, d));
  socket.on("newMessage", (d) => onNewMessage(client, d));
  socket.onAny(onOtherEvent);
  socket.on("disconnect", (reason) => {
    if (client.connected && !shuttingDown) {
      counters.disconnects++;
      if (counters.disconnects <= 3) log(`client ${userId} disconnected: ${reason}`);
    }
    client.connected = false;
  });
  return client;
}

function waitConnect(client, timeoutMs) {
  return new Promise((resolve) => {
    const s = client.socket;
    const t = setTimeout(() => done(false, "timeout"), timeoutMs);
    function done(ok, err) {
      clearTimeout(t);
      s.off("connect", onOk);
      s.off("connect_error", onErr);
      client.connected = ok;
      if (!ok) {
        counters.connectErrors++;
        if (!counters.connectErrorSample) counters.connectErrorSample = String(err);
        s.close();
      }
      resolve(ok);
    }
    const onOk = () => done(true);
    const onErr = (e) => done(false, (e && e.message) || e);
    if (s.connected) return done(true);
    s.on("connect", onOk);
    s.on("connect_error", onErr);
  });
}

function waitJoin(client, roomId, timeoutMs) {
  return new Promise((resolve) => {
    const s = client.socket;
    const t = setTimeout(() => {
      s.off("roomUsers", onUsers);
      counters.joinTimeouts++;
      resolve(false);
    }, timeoutMs);
    const onUsers = () => {
      clearTimeout(t);
      s.off("roomUsers", onUsers);
      client.joined = true;
      resolve(true);
    };
    s.on("roomUsers", onUsers);
    s.emit("joinRoom", { roomId, userName: client.userName, userId: client.userId });
  });
}

async function inBatches(items, batch, fn) {
  for (let i = 0; i < items.length; i += batch) {
    await Promise.all(items.slice(i, i + batch).map(fn));
  }
}

async function setup() {
  const t0 = nowMs();
  const all = [];
  for (let r = 0; r < N; r++) {
    const idx = ROOM0 + r;
    const room = { idx, roomId: `lb-${RUN_ID}-room-${idx}`, clients: [], padding: makePadding(idx, opt.size) };
    rooms.push(room);
    for (let i = 0; i < M; i++) all.push([room, i]);
  }
  const batch = Math.max(1, opt["connect-batch"]);
  // create lazily per batch so that no more than `batch` handshakes are in flight
  await inBatches(all, batch, async ([room, i]) => {
    const c = newClient(room, i);
    room.clients[i] = c;
    await waitConnect(c, opt["connect-timeout"] * 1000);
  });
  const tConnected = nowMs();
  if (!opt["no-join"]) {
    const joinList = [];
    for (const room of rooms) for (const c of room.clients) if (c.connected) joinList.push([room, c]);
    await inBatches(joinList, batch, ([room, c]) => waitJoin(c, room.roomId, opt["join-timeout"] * 1000));
  }
  const connected = rooms.reduce((a, r) => a + r.clients.filter((c) => c.connected).length, 0);
  const joined = rooms.reduce((a, r) => a + r.clients.filter((c) => c.joined).length, 0);
  return {
    event: "ready",
    run_id: RUN_ID,
    room_offset: ROOM0,
    rooms: N,
    clients_per_room: M,
    attempted: N * M,
    connected,
    joined,
    connect_errors: counters.connectErrors,
    connect_error_sample: counters.connectErrorSample,
    join_timeouts: counters.joinTimeouts,
    other_events: otherEvents,
    connect_s: Math.round(tConnected - t0) / 1000,
    join_s: Math.round(nowMs() - tConnected) / 1000,
    gen_rss_mb: Math.round(process.memoryUsage().rss / 1048576),
    pid: process.pid,
  };
}

// ---------------------------------------------------------------- one measured run
async function runStep({ rate, chatRate = 0, warmup, seconds, drain }) {
  const id = ++stepSeq;
  const st = {
    id,
    prefix: `/*lb:${RUN_ID}:${id}:`,
    chatPrefix: null,
    sent: 0,
    expected: 0,
    received: 0,
    selfEcho: 0,
    hist: new Hist(),
    chatSent: 0,
    chatExpected: 0,
    chatReceived: 0,
    chatSelfEcho: 0,
    chatHist: new Hist(),
    sendErrors: 0,
    skipped: 0,
    maxLagMs: 0,
  };
  st.chatPrefix = st.prefix;
  step = st;
  const t0 = nowMs();
  const wStart = t0 + warmup * 1000;
  const wEnd = wStart + seconds * 1000;
  const period = rate > 0 ? 1000 / rate : Infinity;
  const chatPeriod = chatRate > 0 ? 1000 / chatRate : Infinity;
  const size = opt.size;

  // stagger rooms uniformly over one period
  for (const room of rooms) {
    room.next = rate > 0 ? t0 + Math.random() * Math.min(period, 1000) : Infinity;
    room.chatNext = chatRate > 0 ? t0 + Math.random() * Math.min(chatPeriod, 1000) : Infinity;
    room.seq = 0;
  }

  function receiversOf(room, sender) {
    let n = 0;
    for (const c of room.clients) if (c && c !== sender && c.joined && c.connected) n++;
    return n;
  }

  function sendCode(room, ts) {
    const typist = room.clients[0];
    if (!typist || !typist.connected || !typist.joined) return;
    const inWin = ts >= wStart && ts < wEnd ? 1 : 0;
    const header = `${st.prefix}${room.idx}:${room.seq++}:${ts.toFixed(3)}:${inWin}*/\n`;
    const code = header + room.padding.slice(0, Math.max(0, size - header.length));
    typist.socket.emit("codeChange", { roomId: room.roomId, code, language: opt.language });
    if (inWin) {
      st.sent++;
      st.expected += receiversOf(room, typist);
    }
  }

  function sendChat(room, ts) {
    const sender = room.clients[Math.min(1, room.clients.length - 1)];
    if (!sender || !sender.connected || !sender.joined) return;
    const inWin = ts >= wStart && ts < wEnd ? 1 : 0;
    const text = `${st.prefix}${ts.toFixed(3)}:${inWin}: hello from ${sender.userName}`;
    sender.socket.emit("chatMessage", {
      roomId: room.roomId,
      message: {
        id: `${sender.userId}-${id}-${st.chatSent}-${Math.random().toString(36).slice(2, 8)}`,
        userId: sender.userId,
        userName: sender.userName,
        message: text,
        timestamp: Date.now(),
      },
    });
    if (inWin) {
      st.chatSent++;
      st.chatExpected += receiversOf(room, sender);
    }
  }

  let cpu0 = null;
  let cpu1 = null;
  let wall0 = 0;
  let wall1 = 0;
  const tickMs = Math.max(1, Math.min(5, period / 4, chatPeriod / 4));
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const now = nowMs();
      if (cpu0 === null && now >= wStart) {
        cpu0 = process.cpuUsage();
        wall0 = now;
      }
      if (now >= wEnd) {
        cpu1 = process.cpuUsage(cpu0 || undefined);
        wall1 = now;
        clearInterval(timer);
        resolve();
        return;
      }
      for (const room of rooms) {
        while (room.next <= now) {
          const lag = now - room.next;
          if (lag > st.maxLagMs) st.maxLagMs = lag;
          if (lag > 1000) {
            // generator is overloaded: do not burst-catch-up, just record it
            st.skipped += Math.floor(lag / period);
            room.next = now;
          }
          sendCode(room, nowMs());
          room.next += period;
        }
        while (room.chatNext <= now) {
          if (now - room.chatNext > 1000) room.chatNext = now;
          sendChat(room, nowMs());
          room.chatNext += chatPeriod;
        }
      }
    }, tickMs);
  });

  // drain: wait for in-window deliveries (bounded)
  const drainEnd = nowMs() + drain * 1000;
  while (nowMs() < drainEnd && (st.received < st.expected || st.chatReceived < st.chatExpected)) {
    await sleep(20);
  }
  step = null;

  const measS = (wall1 - wall0) / 1000 || seconds;
  const cpuPct = cpu1 ? ((cpu1.user + cpu1.system) / 1000 / (wall1 - wall0)) * 100 : null;
  const r3 = (x) => Math.round(x * 1000) / 1000;
  return {
    event: "result",
    run_id: RUN_ID,
    step: id,
    room_offset: ROOM0,
    rooms: N,
    clients_per_room: M,
    rate,
    chat_rate: chatRate,
    size,
    measure_s: r3(measS),
    connected: rooms.reduce((a, r) => a + r.clients.filter((c) => c && c.connected).length, 0),
    sent: st.sent,
    target_sent: Math.round(rooms.filter((r) => r.clients[0] && r.clients[0].joined).length * rate * measS),
    expected: st.expected,
    received: st.received,
    ratio: st.expected ? r3(st.received / st.expected) : null,
    deliveries_per_s: r3(st.received / measS),
    latency_ms: st.hist.summary(),
    hist: st.hist.sparse(),
    chat: {
      sent: st.chatSent,
      expected: st.chatExpected,
      received: st.chatReceived,
      ratio: st.chatExpected ? r3(st.chatReceived / st.chatExpected) : null,
      latency_ms: st.chatHist.summary(),
      hist: st.chatHist.sparse(),
      self_echo: st.chatSelfEcho,
    },
    self_echo: st.selfEcho,
    stray_events: strayEvents,
    other_events: otherEvents,
    disconnects: counters.disconnects,
    sched_skipped: st.skipped,
    sched_max_lag_ms: r3(st.maxLagMs),
    gen_cpu_pct: cpuPct === null ? null : Math.round(cpuPct * 10) / 10,
    gen_rss_mb: Math.round(process.memoryUsage().rss / 1048576),
  };
}

// ---------------------------------------------------------------- shutdown
let shuttingDown = false;
async function shutdown(code = 0) {
  if (shuttingDown) return;
  shuttingDown = true;
  for (const room of rooms) for (const c of room.clients) if (c && c.socket) c.socket.disconnect();
  await sleep(300);
  process.exit(code);
}
process.on("SIGTERM", () => shutdown(0));
process.on("SIGINT", () => shutdown(0));

// ---------------------------------------------------------------- main
async function main() {
  const ready = await setup();
  if (!opt.control) {
    log(`connected ${ready.connected}/${ready.attempted}, joined ${ready.joined}`);
    const res = await runStep({
      rate: opt.rate,
      chatRate: opt["chat-rate"],
      warmup: opt.warmup,
      seconds: opt.seconds,
      drain: opt.drain,
    });
    delete res.hist;
    delete res.chat.hist;
    res.ready = ready;
    emitLine(res);
    await shutdown(0);
    return;
  }
  emitLine(ready);
  const rl = readline.createInterface({ input: process.stdin });
  let busy = Promise.resolve();
  rl.on("line", (line) => {
    busy = busy.then(async () => {
      let cmd;
      try {
        cmd = JSON.parse(line);
      } catch {
        emitLine({ event: "error", error: `bad command ${line}` });
        return;
      }
      if (cmd.cmd === "run") {
        emitLine(
          await runStep({
            rate: Number(cmd.rate ?? opt.rate),
            chatRate: Number(cmd.chatRate ?? opt["chat-rate"]),
            warmup: Number(cmd.warmup ?? opt.warmup),
            seconds: Number(cmd.seconds ?? opt.seconds),
            drain: Number(cmd.drain ?? opt.drain),
          }),
        );
      } else if (cmd.cmd === "stats") {
        emitLine({
          event: "stats",
          connected: rooms.reduce((a, r) => a + r.clients.filter((c) => c && c.connected).length, 0),
          disconnects: counters.disconnects,
          gen_rss_mb: Math.round(process.memoryUsage().rss / 1048576),
        });
      } else if (cmd.cmd === "quit") {
        await shutdown(0);
      } else {
        emitLine({ event: "error", error: `unknown command ${cmd.cmd}` });
      }
    });
  });
  rl.on("close", () => {
    busy.then(() => shutdown(0));
  });
}

main().catch((e) => {
  emitLine({ event: "error", error: String((e && e.stack) || e) });
  process.exit(2);
});
