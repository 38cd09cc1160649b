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
let awaitingCreate = false;

function setState(state) {
  status.dataset.state = state;
  status.textContent = STATE_TEXT[state];
  if (form) form.querySelector("button").disabled = state !== "live";
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

function receive(event) {
  const frame = JSON.parse(event.data);
  if (Array.isArray(frame)) {
    renderList(frame);
    if (awaitingCreate) {
      // No error came before the new list: the user was added.
      awaitingCreate = false;
      form.reset();
      showErrors({}, "");
    }
  } else if (frame.type === "error" && form) {
    awaitingCreate = false;
    showErrors(frame.errors || {}, frame.message);
  }
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
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    awaitingCreate = true;
    socket.send(JSON.stringify({ action: "create", name: form.elements.name.value, email: form.elements.email.value }));
  });
}

setState("connecting");
connect();
