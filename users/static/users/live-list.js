// The live list page: keeps the list current over the socket (protocol v1,
// docs/protocol.md), reconnects by itself, and adds users through the socket.

const page = document.getElementById("live-list");
const status = document.getElementById("connection");
const list = document.getElementById("users");
const count = document.getElementById("count");
const form = document.getElementById("add-user");

const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10000;
const STATE_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" };

let socket = null;
let retryDelay = RETRY_FIRST_MS;
let connectionState = "connecting";
// The ids of the newest list. Replaced, never changed, so a submit can keep
// the set it saw and tell its own new user from an older one of the same name.
let knownIds = new Set();
// The create sent and not answered yet, or null. Protocol v1 has no
// acknowledgements: the answer is an error frame, or a list holding the user
// that was sent. One at a time, so that an error frame can only be its answer.
let pending = null;

function updateButton() {
  if (form) form.querySelector("button").disabled = connectionState !== "live" || pending !== null;
}

function setState(state) {
  connectionState = state;
  status.dataset.state = state;
  status.textContent = STATE_TEXT[state];
  updateButton();
}

function editLink(user) {
  const link = document.createElement("a");
  link.className = "edit";
  link.href = page.dataset.editUrl.replace("/0/", `/${encodeURIComponent(user.id)}/`);
  link.textContent = "Edit";
  link.setAttribute("aria-label", `Edit ${user.name}`);
  return link;
}

// Built with textContent only: names and emails are never parsed as HTML.
function renderList(users) {
  const items = users.map((user) => {
    const item = document.createElement("li");
    item.dataset.id = user.id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = user.name;
    const email = document.createElement("span");
    email.className = "email";
    email.textContent = user.email;
    item.append(name, email);
    if (page.dataset.editUrl) item.append(editLink(user));
    return item;
  });
  list.replaceChildren(...items);
  count.textContent = `(${users.length})`;
}

function showErrors(errors, message) {
  for (const slot of form.querySelectorAll("[data-error-for]")) {
    const field = slot.dataset.errorFor;
    const text = field === "form" ? (Object.keys(errors).length ? "" : message) : (errors[field] || []).join(" ");
    slot.textContent = text;
    form.elements[field]?.setAttribute("aria-invalid", text ? "true" : "false");
  }
}

// Compared with what was sent, not with the fields, which may have changed
// since. The server trims both, and sends no email as "".
function isSentUser(user) {
  return !pending.knownIds.has(user.id) && user.name === pending.name.trim() && user.email === pending.email.trim();
}

function settle() {
  pending = null;
  updateButton();
}

function created() {
  // Typing since the submit is the next user, not this one's: leave it.
  if (form.elements.name.value === pending.name && form.elements.email.value === pending.email) form.reset();
  showErrors({}, "");
  settle();
}

function receiveList(users) {
  renderList(users);
  knownIds = new Set(users.map((user) => user.id));
  if (!pending) return;
  if (users.some(isSentUser)) created();
  // Any other list is someone else's change: the form is left alone, except
  // that the first list after a reconnect is the last word on a submit the old
  // socket took with it (see connect).
  else if (pending.socketClosed) settle();
}

function receiveError(frame) {
  // Error frames go only to the socket whose message caused them, and this
  // page sends only creates, one at a time: it is the pending submit's answer.
  // Without one pending there is no input it could be about.
  if (!form || !pending) return;
  settle();
  showErrors(frame.errors || {}, frame.message);
}

function receive(event) {
  const frame = JSON.parse(event.data);
  if (Array.isArray(frame)) receiveList(frame);
  else if (frame.type === "error") receiveError(frame);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}${page.dataset.socketPath}`);
  socket.addEventListener("open", () => {
    retryDelay = RETRY_FIRST_MS;
    setState("live");
  });
  socket.addEventListener("message", receive);
  socket.addEventListener("close", () => {
    // A submit pending now may or may not have been made, and its error frame
    // is lost with the socket. It stays pending (the button is disabled while
    // reconnecting anyway) until the first list of the next socket, which is
    // the current list: if that holds the sent user the form is cleared; if
    // not, it was not made, the input stays and the user can submit again.
    if (pending) pending.socketClosed = true;
    setState("reconnecting");
    // Exponential backoff with jitter, so that a restarted server is not hit
    // by every page at the same instant.
    const delay = retryDelay * (0.5 + Math.random());
    retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
    setTimeout(connect, delay);
  });
}

if (form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!socket || socket.readyState !== WebSocket.OPEN || pending) return;
    const name = form.elements.name.value;
    const email = form.elements.email.value;
    pending = { name, email, knownIds, socketClosed: false };
    updateButton();
    socket.send(JSON.stringify({ action: "create", name, email }));
  });
}

setState("connecting");
connect();
