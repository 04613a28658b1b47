// A browser app for jwt-server on another origin than the API, as a React or
// Vue app would be: the API must list this page's origin in CORS_ORIGINS.
// Settings, in the page's URL or here:
//   ?api=https://api.example.com   where the API is
//   ?cookie=1                      the API runs with AUTH_COOKIE=true
// Live updates come over Socket.IO, from socket.io-client's browser bundle
// (index.html loads it from node_modules: run `npm ci` here once).
"use strict";

const DEFAULT_API = "http://127.0.0.1:8000";
const params = new URLSearchParams(location.search);
const API = (params.get("api") || DEFAULT_API).replace(/\/+$/, "");
const COOKIE_MODE = params.get("cookie") === "1";

// The access token lives in memory only. What renews it survives a reload in
// sessionStorage (not the tab): the refresh token, or in cookie mode the word
// "cookie", the token itself being in an HttpOnly cookie no script can read.
let accessToken = null;
const renewal = {
  get: () => sessionStorage.getItem("renewal"),
  set: (value) => (value ? sessionStorage.setItem("renewal", value) : sessionStorage.removeItem("renewal")),
};

function keep(tokenResponse) {
  accessToken = tokenResponse.access_token;
  renewal.set(tokenResponse.refresh_token || (COOKIE_MODE ? "cookie" : null));
}

function forget() {
  accessToken = null;
  renewal.set(null);
}

class Problem extends Error {
  // An error answer of the API: an RFC 9457 problem document.
  constructor(document) {
    super(document.detail || document.title || "The request failed.");
    this.document = document;
  }
}

class SessionEnded extends Error {}

function send(method, path, body, token) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (COOKIE_MODE && path.startsWith("/auth")) {
    // The refresh cookie (Path=/auth) is set, sent and deleted only on these.
    init.credentials = "include";
    init.headers["X-Requested-With"] = "fetch";
  }
  return fetch(API + path, init);
}

async function problemOf(answer) {
  try {
    return await answer.json();
  } catch {
    return { status: answer.status, detail: `The server answered ${answer.status}.` };
  }
}

// One refresh at a time: refresh tokens rotate, and the old one presented
// again would look like a stolen token and end the session.
let refreshing = null;

function refresh() {
  refreshing ??= (async () => {
    const held = renewal.get();
    const answer = await send("POST", "/auth/refresh", held === "cookie" ? undefined : { refresh_token: held });
    if (answer.ok) {
      keep(await answer.json());
      reauthenticate();
    } else {
      forget();
    }
    return answer.ok;
  })().finally(() => { refreshing = null; });
  return refreshing;
}

// Call the API as the logged-in user; on a 401, refresh silently once and retry.
async function api(method, path, body) {
  if (!accessToken && renewal.get()) await refresh();
  const used = accessToken;
  let answer = await send(method, path, body, used);
  if (answer.status === 401 && renewal.get() && (accessToken !== used || (await refresh()))) {
    answer = await send(method, path, body, accessToken);
  }
  if (answer.status === 401) throw new SessionEnded();
  if (!answer.ok) throw new Problem(await problemOf(answer));
  return answer.status === 204 ? null : answer.json();
}

async function logIn(username, password) {
  const answer = await send("POST", "/auth", { username, password });
  if (!answer.ok) throw new Problem(await problemOf(answer));
  keep(await answer.json());
}

async function register(username, password) {
  const answer = await send("POST", "/users", { username, password });
  if (!answer.ok) throw new Problem(await problemOf(answer));
  await logIn(username, password);
}

async function logOut() {
  stopLive(); // this tab knows why the session ends: no session_ended message for it
  // With sessions, end this one on the server too; the page forgets it anyway.
  if (renewal.get()) await api("POST", "/auth/logout").catch(() => {});
  forget();
  showLogin("You have logged out.", "info");
}

// The page.

const $ = (selector) => document.querySelector(selector);

function say(text, kind = "error") {
  $("#message").textContent = text;
  $("#message").className = kind;
  $("#message").hidden = !text;
}

function showLogin(text = "", kind = "error") {
  stopLive();
  $("#pets-section").hidden = true;
  $("#login-form").hidden = false;
  $("#login-form").reset();
  say(text, kind);
}

function petItem(pet) {
  const item = document.createElement("li");
  item.dataset.id = pet.id;
  const label = document.createElement("span");
  label.textContent = pet.name;
  if (pet.species) {
    const species = document.createElement("span");
    species.className = "species";
    species.textContent = ` (${pet.species})`;
    label.append(species);
  }
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "secondary";
  remove.textContent = "Delete";
  remove.setAttribute("aria-label", `Delete ${pet.name}`);
  remove.addEventListener("click", () => run(async () => {
    await api("DELETE", `/pets/${pet.id}`);
    removePet(pet);
  }));
  item.append(label, remove);
  return item;
}

// An answer can be older than a live event that came before it: the server
// read the list, or made the pet, and then another tab renamed or deleted it.
// The answer must not undo the event: the list is read again on top of the
// events that came while it loaded, and a new pet shown only if no event has.
const loading = new Set(); // per list load, the events that came meanwhile
const heard = new Set(); // the ids of the pets that live events have told of

async function loadPets() {
  const arrived = [];
  loading.add(arrived);
  try {
    const pets = await api("GET", "/my-pets");
    $("#pets").replaceChildren(...pets.map(petItem));
    $("#no-pets").hidden = pets.length > 0;
    for (const apply of arrived) apply();
  } finally {
    loading.delete(arrived);
  }
}

// Add a pet, or replace it if the list has it already (its own answer and its event may both arrive).
function showPet(pet) {
  const shown = $(`#pets li[data-id="${pet.id}"]`);
  if (shown) shown.replaceWith(petItem(pet));
  else $("#pets").append(petItem(pet));
  $("#no-pets").hidden = true;
}

function removePet(pet) {
  $(`#pets li[data-id="${pet.id}"]`)?.remove();
  $("#no-pets").hidden = $("#pets").children.length > 0;
}

async function showPets() {
  const me = await api("GET", "/users/me");
  $("#username").textContent = me.username;
  startLive();
  await loadPets();
  $("#login-form").hidden = true;
  $("#pets-section").hidden = false;
}

// Run an action, showing what went wrong in the API's own words.
async function run(action) {
  say("");
  await attempt(action);
}

// The same for what the page does by itself (live updates): a message stays until something goes wrong.
async function attempt(action) {
  try {
    await action();
  } catch (error) {
    if (error instanceof SessionEnded) {
      forget();
      showLogin("Your session has ended; please log in again.");
    } else if (error instanceof Problem) {
      const fields = (error.document.errors || []).map((field) => field.message);
      say(fields.length > 1 ? fields.join(" ") : error.message);
    } else {
      say(`The API at ${API} cannot be reached: check that it is running and that its CORS_ORIGINS lists ${location.origin}.`);
    }
  }
}

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  run(async () => {
    await logIn(form.get("username"), form.get("password"));
    await showPets();
  });
});

$("#register").addEventListener("click", () => {
  const form = new FormData($("#login-form"));
  run(async () => {
    await register(form.get("username"), form.get("password"));
    await showPets();
  });
});

$("#pet-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  run(async () => {
    const pet = await api("POST", "/pets", { name: form.get("name"), species: form.get("species") || null });
    if (!heard.has(pet.id)) showPet(pet);
    event.target.reset();
  });
});

$("#logout").addEventListener("click", () => run(logOut));

// Live updates: what this user's other tabs and devices change shows up here
// without a reload, and a session ended elsewhere brings back the login form.

let socket = null;
let lastEventId = null; // the newest event seen: a reconnect first replays what came after it

function liveStatus(text) {
  $("#live").textContent = text;
}

function startLive() {
  stopLive();
  if (typeof io === "undefined") {
    liveStatus("Live updates are off: socket.io.min.js did not load (run npm ci in examples/spa).");
    return;
  }
  lastEventId = null;
  socket = io(API, {
    transports: ["websocket"],
    // A function: each reconnect sends the current access token and what it has seen.
    auth: (send) => send(liveCredentials()),
  });
  const live = socket;
  live.on("connect", () => liveStatus("Live updates are on."));
  // The server's own disconnects (after session_ended or unauthorized) are final; others reconnect.
  live.on("disconnect", () => liveStatus(live.active ? "Live updates are reconnecting…" : "Live updates are off."));
  live.on("connect_error", (error) => attempt(() => renewLive(error.data?.code)));
  live.on("pet_created", counted(showPet));
  live.on("pet_updated", counted(showPet));
  live.on("pet_deleted", counted(removePet));
  live.on("replay_incomplete", () => attempt(loadPets)); // missed more than the server keeps
  live.on("session_ended", ({ code }) => attempt(() => endedElsewhere(code)));
}

function stopLive() {
  socket?.close();
  socket = null;
  liveStatus("");
}

function counted(show) {
  return (event) => {
    lastEventId = event.event_id;
    heard.add(event.id);
    for (const arrived of loading) arrived.push(() => show(event));
    show(event);
  };
}

// After a silent refresh the socket carries on with the new token (else it ends at the old one's exp).
function reauthenticate() {
  // With what it has seen: if the socket is not bound yet, its catch-up starts there.
  if (socket?.connected) socket.emit("authenticate", liveCredentials());
}

function liveCredentials() {
  return lastEventId === null ? { token: accessToken } : { token: accessToken, last_event_id: lastEventId };
}

// A refused connect (an access token that expired while the connection was
// down): refresh and connect again, once per refreshed token.
let refreshedForLive = null;

async function renewLive(code) {
  if (code === undefined) return; // the API is unreachable: socket.io-client keeps trying
  liveStatus("Live updates are off.");
  if (code !== "invalid_token" || !renewal.get() || refreshedForLive === accessToken) return;
  if (!(await refresh())) throw new SessionEnded();
  refreshedForLive = accessToken;
  socket?.connect();
}

async function endedElsewhere(code) {
  if (code === "token_expired" && renewal.get()) {
    // Idle past the access token's lifetime: renew it and carry on where the socket left off.
    if (!(await refresh())) throw new SessionEnded();
    socket?.connect();
    return;
  }
  forget();
  showLogin(`Your session has ended (${code.replaceAll("_", " ")}); please log in again.`);
}

if (renewal.get()) {
  // Back after a reload: a silent refresh gets a new access token.
  run(() => showPets().catch((error) => { showLogin(); throw error; }));
} else {
  showLogin();
}
