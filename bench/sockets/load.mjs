// Hold many authenticated Socket.IO connections to jwt-server and time its fan-out.
//
// Reads {"url", "users": [{"token"}...], "sockets", "writes"} as JSON on
// stdin's first line. Opens `sockets` connections spread over the users (as
// socket.io-client in a browser app would: websocket transport, auth payload),
// then creates `writes` pets one after another, each for the next user, and
// times each pet_created from just before the HTTP request to its arrival on
// every socket of its owner. Prints one JSON line of results, then keeps the
// sockets open until stdin says "close" (the bench measures HTTP meanwhile).
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const lines = createInterface({ input: process.stdin });
const iterator = lines[Symbol.asyncIterator]();
const plan = JSON.parse((await iterator.next()).value);

const sockets = [];
const sentAt = new Map();
const latencies = [];
let connectFailures = 0;

function open(user) {
  return new Promise((resolve) => {
    const socket = io(plan.url, { transports: ["websocket"], auth: { token: user.token }, reconnection: false });
    socket.on("pet_created", (pet) => {
      const started = sentAt.get(pet.name);
      if (started !== undefined) latencies.push(performance.now() - started);
    });
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", () => { connectFailures += 1; resolve(socket); });
    sockets.push(socket);
  });
}

const opening = [];
for (let i = 0; i < plan.sockets; i++) {
  opening.push(open(plan.users[i % plan.users.length]));
  if (i % 50 === 49) await Promise.all(opening.splice(0));  // not all in one burst
}
await Promise.all(opening);
const connected = sockets.filter((socket) => socket.connected).length;
await new Promise((resolve) => setTimeout(resolve, 500));

const expected = [];
for (let i = 0; i < plan.writes; i++) {
  const user = plan.users[i % plan.users.length];
  const name = `fanout-${i}`;
  sentAt.set(name, performance.now());
  const answer = await fetch(`${plan.url}/pets`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${user.token}` },
    body: JSON.stringify({ name }),
  });
  if (answer.status !== 201) throw new Error(`POST /pets answered ${answer.status}`);
  expected.push(Math.ceil(plan.sockets / plan.users.length));
  await new Promise((resolve) => setTimeout(resolve, plan.pauseMs ?? 20));
}
await new Promise((resolve) => setTimeout(resolve, 1000));

latencies.sort((a, b) => a - b);
const quantile = (q) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : null;
console.log(JSON.stringify({
  connected, connectFailures, deliveries: latencies.length,
  expectedDeliveries: expected.reduce((a, b) => a + b, 0),
  p50: quantile(0.5), p99: quantile(0.99), max: latencies.at(-1) ?? null,
}));

for await (const line of iterator) if (line.trim() === "close") break;
for (const socket of sockets) socket.disconnect();
process.exit(0);
