// The live list page: keeps the list current over the socket with protocol v2
// (docs/protocol.md): the whole list once, then only what changed. After a
// reconnect it resumes from the version it holds, so the list is not
// downloaded again. Adds users through the socket (add-user-form.js).

import { AddUserForm, newRequestId } from "./add-user-form.js";
import { UserList } from "./user-list.js";
import { VirtualList } from "./virtual-list.js";

const SUBPROTOCOL = "users.v2";
// This page's own name for the server's request-id receipts: a create resent
// after a reconnect is then known as this page's, and another page's same id is not.
const CLIENT = newRequestId();
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10000;
const STATE_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" };

const page = document.getElementById("live-list");
const status = document.getElementById("connection");
const count = document.getElementById("count");
const formElement = document.getElementById("add-user");

const users = new UserList();
const view = new VirtualList(document.getElementById("users-view"), document.getElementById("users"), users, fillRow);
const form = formElement && new AddUserForm(formElement, send);

let socket = null;
let retryDelay = RETRY_FIRST_MS;
let connectionState = null;
// The epoch and version of the list shown, which the next connection resumes
// from; null before the first snapshot, and after changes that could not be
// applied to it.
let held = null;

function setState(state) {
  if (state === connectionState) return; // the status is a live region: say each state once
  connectionState = state;
  status.dataset.state = state;
  status.textContent = STATE_TEXT[state];
  form?.setLive(state === "live");
}

function editLink(user) {
  const link = document.createElement("a");
  link.className = "edit";
  link.href = page.dataset.editUrl.replace("/0/", `/${encodeURIComponent(user.id)}/`);
  link.textContent = "Edit";
  link.setAttribute("aria-label", `Edit ${user.name}`);
  return link;
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

// Built with textContent only: names and emails are never parsed as HTML.
function fillRow(row, user) {
  row.dataset.id = user.id;
  row.replaceChildren(span("name", user.name), span("email", user.email));
  if (page.dataset.editUrl) row.append(editLink(user));
}

function send(command) {
  if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(command));
}

function showCurrentList() {
  view.render();
  count.textContent = `(${users.size})`;
  retryDelay = RETRY_FIRST_MS;
  setState("live");
}

function receiveSnapshot(frame) {
  users.replace(frame.users);
  held = { epoch: frame.epoch, version: frame.version };
  showCurrentList();
}

function receiveChanges(frame) {
  if (held === null || frame.epoch !== held.epoch || frame.from !== held.version) {
    // Changes to another list than the one shown would make a list that never
    // existed: start again from the whole list.
    held = null;
    reconnect();
    return;
  }
  users.apply(frame.upserted, frame.deleted);
  held.version = frame.version;
  showCurrentList();
}

function receive(event) {
  const frame = JSON.parse(event.data);
  if (frame.type === "snapshot") receiveSnapshot(frame);
  else if (frame.type === "changes") receiveChanges(frame);
  else if (frame.type === "ack" || frame.type === "error") form?.answer(frame);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const resume = held ? `&epoch=${encodeURIComponent(held.epoch)}&version=${held.version}` : "";
  const query = `?client=${CLIENT}${resume}`;
  const ws = new WebSocket(`${scheme}://${location.host}${page.dataset.socketPath}${query}`, SUBPROTOCOL);
  socket = ws;
  // A socket given up on may still deliver frames, and its close comes later:
  // only the current socket's count.
  ws.addEventListener("open", () => ws === socket && form?.resend());
  ws.addEventListener("message", (event) => ws === socket && receive(event));
  ws.addEventListener("close", () => ws === socket && reconnect());
}

function reconnect() {
  socket?.close();
  socket = null;
  setState("reconnecting");
  // Exponential backoff with jitter, so that a restarted server is not hit
  // by every page at the same instant.
  const delay = retryDelay * (0.5 + Math.random());
  retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
  setTimeout(connect, delay);
}

setState("connecting");
connect();
