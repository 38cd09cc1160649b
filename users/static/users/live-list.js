// The live list page: a window of the list, searched and sorted, kept current
// by the JavaScript client (clients/js, served at static/usersite-client/) over
// a live query. Scrolling moves the window, and the scrollbar stands for every
// matching user, so a list of any length is never downloaded whole. Adds users
// through the socket (add-user-form.js).

import { LiveUsers, MAX_LIMIT, sameQuery, makeQuery } from "../usersite-client/usersite-client.js";
import { AddUserForm } from "./add-user-form.js";
import { ListControls } from "./list-controls.js";
import { VirtualList } from "./virtual-list.js";

// A window holds the rows in view and as many above and below, so a scroll
// of up to a screen needs no new one: a window every screen, not every row.
const SCREENS_PER_WINDOW = 3;
// The server takes 10 query changes a second from a socket (after a burst of
// 30): a scrollbar dragged across the list asks for a window at most this often.
const MIN_MS_BETWEEN_WINDOWS = 100;
const STATE_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", closed: "Closed" };

const page = document.getElementById("live-list");
const status = document.getElementById("connection");
const count = document.getElementById("count");
const formElement = document.getElementById("add-user");
const scroller = document.getElementById("users-view");

const view = new VirtualList(scroller, document.getElementById("users"), fillRow, wantRows);
const socketUrl = new URL(page.dataset.socketPath, location.href);
socketUrl.protocol = location.protocol === "https:" ? "wss:" : "ws:";
let wanted = makeQuery({ limit: windowSize(), offset: 0 });
let askedAt = -Infinity;
let askTimer;
const live = new LiveUsers(socketUrl, wanted);
const controls = new ListControls(
  document.getElementById("search"),
  document.querySelectorAll("[data-column]"),
  changeSearchOrOrder,
);
const form = formElement && new AddUserForm(formElement, live);

function windowSize() {
  return Math.min(MAX_LIMIT, view.rowsInView * SCREENS_PER_WINDOW);
}

// Ask for the window around the rows in view, unless the window held or asked for holds them.
function wantRows(first, end) {
  const held = live.current;
  if (held === null) return;
  const holds = (query, length) =>
    query.search === controls.search &&
    query.order === controls.order &&
    first >= query.offset &&
    Math.min(end, held.total) <= query.offset + length;
  if (holds(held.query, held.users.length) || holds(wanted, wanted.limit)) return;
  const limit = windowSize();
  const margin = Math.floor((limit - (end - first)) / 2);
  follow({ search: controls.search, order: controls.order, limit, offset: Math.max(0, first - margin) });
}

// Follow `options`' window: the newest one asked for wins, and it goes at most every MIN_MS_BETWEEN_WINDOWS.
function follow(options) {
  const query = makeQuery(options);
  if (sameQuery(query, wanted)) return;
  wanted = query;
  clearTimeout(askTimer);
  askTimer = setTimeout(() => {
    askedAt = performance.now();
    live.query(wanted).catch((error) => console.warn("The list did not change:", error.message));
  }, Math.max(0, askedAt + MIN_MS_BETWEEN_WINDOWS - performance.now()));
}

function changeSearchOrOrder({ search, order }) {
  scroller.scrollTop = 0;
  follow({ search, order, limit: windowSize(), offset: 0 });
}

function showWindow({ query, users, total }) {
  view.show(query.offset, users, total);
  count.textContent = query.search ? `(${total} matching)` : `(${total})`;
}

function showState(state) {
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
  row.replaceChildren(span("id", user.id), span("name", user.name), span("email", user.email));
  if (page.dataset.editUrl) row.append(editLink(user));
}

live.onUpdate(showWindow);
live.onState(showState); // a live region: the client reports each state once
