#!/usr/bin/env node
// Access control with the official socket.io-client: a forged token is refused at connect; an
// owner and a viewer (on long-polling) share a room; the viewer sees the owner's keystrokes
// and its own are refused; the owner makes the room private without it and it is put out.
// Prints a JSON report (checked by tests/test_js_client.py).
//
//   node access.mjs <serverUrl> <roomId> <ownerToken> <viewerToken> <forgedToken>
import { io } from "socket.io-client";

const [url, roomId, ownerToken, viewerToken, forgedToken] = process.argv.slice(2);
const report = { ok: false };
const fail = (message) => {
  report.error = message;
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(1);
};
setTimeout(() => fail("not done within 15 s"), 15_000).unref();

const connect = (token, transport) =>
  io(url, { auth: { token }, transports: [transport], reconnection: false, forceNew: true });
const next = (socket, event) => new Promise((resolve) => socket.once(event, resolve));
const rest = async (method, path, token, body) => {
  const response = await fetch(url + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return [response.status, await response.json()];
};

// A forged token: refused at the door, with the reason.
const forged = connect(forgedToken, "websocket");
const refusal = await next(forged, "connect_error");
report.forged = refusal.data?.code ?? refusal.message;
forged.close();

const owner = connect(ownerToken, "websocket");
await next(owner, "connect");
const joined = await owner.emitWithAck("joinRoom", { roomId, userName: "Owner" });
report.ownerRole = joined.role;
const [status] = await rest("PUT", `/api/sessions/${roomId}/access`, ownerToken, {
  visibility: "private",
  members: [{ userId: "u-viewer", role: "viewer" }],
});
report.madePrivate = status;

const viewer = connect(viewerToken, "polling");
await next(viewer, "connect");
report.viewerRole = (await viewer.emitWithAck("joinRoom", { roomId, userName: "Viewer" })).role;
const seen = next(viewer, "codeUpdate");
await owner.emitWithAck("codeChange", { roomId, code: "typed by the owner" });
report.viewerSaw = (await seen).code;
const refused = await viewer.emitWithAck("codeChange", { roomId, code: "typed by the viewer" });
report.viewerChange = refused.ok ? "accepted" : refused.error.code;

const revoked = next(viewer, "error");
const closed = next(viewer, "disconnect");
const started = Date.now();
await rest("PUT", `/api/sessions/${roomId}/access`, ownerToken, { members: [] });
report.revocation = (await revoked).code;
report.disconnectReason = await closed;
report.revokedWithinMs = Date.now() - started;
const [, session] = await rest("GET", `/api/sessions/${roomId}`, ownerToken);
report.code = session.session.code;
owner.close();
report.ok = true;
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(0);
