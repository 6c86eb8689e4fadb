// The Socket.IO 4 peer roomcast is measured against: a room broadcast server as a Socket.IO
// chat would have it. `join` puts the socket in a room; `publish` numbers the message in its
// room and broadcasts it to everyone there (encoded once by the adapter), then acks the number.
// Usage: node server.js PORT (loopback only). With REDIS_URL set, several such servers share
// rooms through @socket.io/redis-adapter (Redis pub/sub), numbering each room's messages with
// Redis INCR: the multi-node peer.
"use strict";
const http = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 3000);
const io = new Server({
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  maxHttpBufferSize: 64 * 1024,
});
const seqs = new Map();
let shared = null;
if (process.env.REDIS_URL) {
  const { createClient } = require("redis");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  shared = pub;
  Promise.all([pub.connect(), sub.connect()]).then(() => io.adapter(createAdapter(pub, sub)));
}
const next = async (room) => {
  if (shared) return Number(await shared.incr("seq:" + room));
  const seq = (seqs.get(room) || 0) + 1;
  seqs.set(room, seq);
  return seq;
};

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(String(room));
    if (typeof ack === "function") ack({ ok: true });
  });
  socket.on("publish", async (room, text, ack) => {
    room = String(room);
    const seq = await next(room);
    io.to(room).emit("message", {
      type: "message",
      id: seq.toString(16).padStart(16, "0"),
      room,
      seq,
      user: "pub",
      text: String(text),
      sent_at: new Date().toISOString(),
    });
    if (typeof ack === "function") ack(seq);
  });
});

const server = http.createServer();
io.attach(server);
server.listen(port, "127.0.0.1");
