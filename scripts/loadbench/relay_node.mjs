#!/usr/bin/env node
// Reference Node.js relay (socket.io 4.8) for scripts/bench.py: same events as
// scripts/relay_bare.py, rooms in memory, no validation, no persistence.
// socket.io defaults are kept (perMessageDeflate: false, websocket+polling).
//
//   node scripts/loadbench/relay_node.mjs --port 5056 [--host 127.0.0.1]
import http from "node:http";
import { Server } from "socket.io";

function argValue(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const port = Number(argValue("--port", process.env.PORT || 5056));
const host = argValue("--host", "127.0.0.1");

const httpServer = http.createServer((req, res) => {
  if (req.method === "GET" && req.url && req.url.split("?")[0] === "/api/health") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"status":"ok"}');
    return;
  }
  // socket.io attaches its own request listener for /socket.io/ and answers
  // those itself; anything else is a 404.
  if (!req.url || !req.url.startsWith("/socket.io/")) {
    res.writeHead(404);
    res.end();
  }
});

const io = new Server(httpServer, { cors: { origin: "*" } });

// roomId -> Map(socketId -> {userId, userName})
const rooms = new Map();

function leave(socket, roomId) {
  const members = rooms.get(roomId);
  if (!members || !members.has(socket.id)) return;
  const info = members.get(socket.id);
  members.delete(socket.id);
  socket.leave(roomId);
  if (members.size === 0) {
    rooms.delete(roomId);
  } else {
    io.to(roomId).emit("userLeft", info);
    io.to(roomId).emit("roomUsers", [...members.values()]);
  }
}

io.on("connection", (socket) => {
  const me = { userId: null, userName: null, rooms: new Set() };

  socket.on("joinRoom", (data) => {
    const { roomId, userName, userId } = data || {};
    me.userId = userId;
    me.userName = userName;
    me.rooms.add(roomId);
    const info = { userId, userName };
    let members = rooms.get(roomId);
    if (!members) rooms.set(roomId, (members = new Map()));
    members.set(socket.id, info);
    socket.join(roomId);
    socket.to(roomId).emit("userJoined", info);
    io.to(roomId).emit("roomUsers", [...members.values()]);
  });

  socket.on("codeChange", (data) => {
    socket.to(data.roomId).emit("codeUpdate", {
      code: data.code,
      language: data.language,
      userId: me.userId,
      userName: me.userName,
      timestamp: Date.now(),
    });
  });

  socket.on("chatMessage", (data) => {
    socket.to(data.roomId).emit("newMessage", { message: data.message });
  });

  socket.on("leaveRoom", (data) => {
    me.rooms.delete(data.roomId);
    leave(socket, data.roomId);
  });

  socket.on("disconnect", () => {
    for (const roomId of me.rooms) leave(socket, roomId);
    me.rooms.clear();
  });
});

httpServer.listen(port, host, () => {
  process.stderr.write(`relay_node listening on http://${host}:${port}\n`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    io.close();
    httpServer.close();
    setTimeout(() => process.exit(0), 200).unref();
  });
}
