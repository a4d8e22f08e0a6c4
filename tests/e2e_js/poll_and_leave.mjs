#!/usr/bin/env node
// A client on long-polling (the original client's fallback transport) that joins a room, types
// once and disconnects, as a closed tab does. Used to check that the server still shuts down
// promptly on SIGTERM afterwards.
//
//   node poll_and_leave.mjs <serverUrl> <roomId> [transport]
//
// Exit codes: 0 done, 1 the server did not answer as expected, 2 bad usage.
import { io } from "socket.io-client";

const [url, roomId, transport = "polling"] = process.argv.slice(2);
if (!url || !roomId) {
  process.stderr.write("usage: node poll_and_leave.mjs <serverUrl> <roomId> [transport]\n");
  process.exit(2);
}

const fail = (message) => {
  process.stderr.write(`FAIL ${message}\n`);
  process.exit(1);
};
setTimeout(() => fail("no roomUsers within 10 s"), 10_000).unref();

const socket = io(url, { transports: [transport], reconnection: false, forceNew: true, timeout: 5000 });
socket.on("connect_error", (error) => fail(`connect_error: ${error.message}`));
socket.on("connect", () => {
  socket.emit("joinRoom", { roomId, userName: "Polly", userId: "e2e-user-polly" });
});
socket.once("roomUsers", () => {
  socket.emit("codeChange", { roomId, code: "// typed over long-polling\n", language: "javascript" });
  // Let the change reach the server, then close the tab.
  setTimeout(() => {
    const used = socket.io.engine.transport.name;
    socket.disconnect();
    process.stdout.write(`${JSON.stringify({ ok: true, transport: used })}\n`);
    setTimeout(() => process.exit(0), 100);
  }, 200);
});
