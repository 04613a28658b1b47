// A Node client of jwt-server's Socket.IO endpoint, written as the clients of
// the original socket.io server were (socketio-jwt): connect, emit
// "authenticate" with the access token, wait for "authenticated" (or
// "unauthorized"), then listen for the pet events. With "payload" as its
// argument it hands the token over in the connect packet instead.
//
//   JWT_SERVER_URL=http://127.0.0.1:8000 TOKEN=<access token> node client.js [authenticate|payload]
//
// Each thing that happens is one JSON line on stdout ({"event", "data"}), for
// tests/test_realtime_node_e2e.py to read. It stops when stdin closes or when
// the server ends the socket for good.
import { io } from "socket.io-client";

const how = process.argv[2] || "authenticate";
const token = process.env.TOKEN;
let lastEventId = null; // the newest event_id seen: a reconnect asks for what came after it

function report(event, data = null) {
  process.stdout.write(JSON.stringify({ event, data }) + "\n");
}

function credentials() {
  return lastEventId === null ? { token } : { token, last_event_id: lastEventId };
}

const socket = io(process.env.JWT_SERVER_URL, {
  transports: ["websocket"],
  // A function, so that a reconnect after a dropped connection sends the latest last_event_id.
  auth: how === "payload" ? (send) => send(credentials()) : undefined,
});

socket.on("connect", () => {
  report("connect");
  if (how === "authenticate") socket.emit("authenticate", credentials());
});

socket.onAny((event, data) => {
  if (data && Number.isInteger(data.event_id)) lastEventId = data.event_id;
  report(event, data ?? null);
});

socket.on("connect_error", (error) => {
  report("connect_error", { message: error.message, data: error.data ?? null, active: socket.active });
  if (!socket.active) stop();
});

socket.on("disconnect", (reason) => {
  // "io server disconnect": the server ended the socket, and socket.io-client will not reconnect by itself.
  report("disconnect", { reason, active: socket.active });
  if (!socket.active) stop();
});

function stop() {
  socket.close();
  process.exit(0);
}

process.stdin.on("end", stop).resume();
