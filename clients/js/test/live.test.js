// LiveUsers against a real usersite server, at USERSITE_URL (http://host:port):
// tests/e2e/test_js_client.py starts one and runs these with Node.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import { CommandError, LiveUsers, compareUsers, makeQuery } from "../src/usersite-client.js";

const HTTP_URL = process.env.USERSITE_URL ?? "";
const SOCKET_URL = `${HTTP_URL.replace(/^http/, "ws")}/api/v1/users/ws`;
const skip = HTTP_URL ? false : "set USERSITE_URL to a running server's http://host:port";
const TIMEOUT_MS = 20_000;

/**
 * @typedef {import("../src/usersite-client.js").User} User
 * @typedef {import("../src/usersite-client.js").Update} Update
 * @typedef {import("../src/usersite-client.js").QueryOptions} QueryOptions
 */

/** A name no other test uses, made of ASCII letters and digits (SQLite's LIKE folds ASCII only). */
const uniqueWord = () => `w${randomUUID().replaceAll("-", "").slice(0, 10)}`;

/**
 * Call REST; return the answer's JSON (null for 204).
 * @param {string} method
 * @param {string} path
 * @param {object} [body]
 */
async function rest(method, path = "", body = undefined) {
  const response = await fetch(`${HTTP_URL}/api/v1/users${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body && JSON.stringify(body),
  });
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${await response.clone().text()}`);
  return response.status === 204 ? null : response.json();
}

/** @returns {Promise<User[]>} */
const restUsers = async () => (await rest("GET")).users;

/**
 * The window `options` select from every user, as the protocol defines it.
 * @param {User[]} users
 * @param {QueryOptions} options
 */
function expectedWindow(users, options) {
  const query = makeQuery(options);
  const search = query.search.toLowerCase();
  const matching = users.filter((user) => `${user.name}\n${user.email}`.toLowerCase().includes(search));
  matching.sort(compareUsers(query.order));
  const end = query.limit === null ? undefined : query.offset + query.limit;
  return { users: matching.slice(query.offset, end), total: matching.length };
}

/**
 * Resolve with the first Update (the current one included) for which `condition` holds.
 * @param {LiveUsers} live
 * @param {(update: Update) => boolean} condition
 * @returns {Promise<Update>}
 */
function updateWhere(live, condition, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no such update in ${timeoutMs} ms; the last: ${JSON.stringify(live.current)}`));
    }, timeoutMs);
    const stop = live.onUpdate((update) => {
      if (!condition(update)) return;
      clearTimeout(timer);
      queueMicrotask(() => stop());
      resolve(update);
    });
  });
}

/**
 * Wait until the client holds exactly what REST says its query selects.
 * @param {LiveUsers} live
 * @param {QueryOptions} options
 */
async function holdsWhatRestSays(live, options) {
  const expected = expectedWindow(await restUsers(), options);
  const matches = (/** @type {Update} */ update) =>
    JSON.stringify([update.users, update.total]) === JSON.stringify([expected.users, expected.total]);
  return updateWhere(live, matches).catch((error) => {
    assert.deepEqual(live.current && { users: live.current.users, total: live.current.total }, expected);
    throw error;
  });
}

/**
 * A WebSocket class that records every socket the client opens, what each sent
 * and received, and that can cut a connection right after a frame is sent.
 */
function tappedWebSocket() {
  /** @type {Tapped[]} */
  const sockets = [];
  /** @type {{cutAfter: ((frame: any) => boolean) | null}} */
  const control = { cutAfter: null };
  class Tapped extends WebSocket {
    /** @type {any[]} */ sent = [];
    /** @type {any[]} */ received = [];

    /**
     * @param {string} url
     * @param {string[]} protocols
     */
    constructor(url, protocols) {
      super(url, protocols);
      sockets.push(this);
      this.addEventListener("message", (event) => this.received.push(JSON.parse(event.data)));
    }

    /** @param {string} data */
    send(data) {
      const frame = JSON.parse(data);
      this.sent.push(frame);
      super.send(data);
      // Closed from this side, the socket delivers nothing more: the answer is lost.
      if (control.cutAfter?.(frame)) {
        control.cutAfter = null;
        this.close();
      }
    }
  }
  return { Tapped, sockets, control };
}

/** @param {string} url */
const parameters = (url) => Object.fromEntries(new URL(url).searchParams);

/**
 * Make a LiveUsers that the test closes at its end.
 * @param {import("node:test").TestContext} t
 * @param {ConstructorParameters<typeof LiveUsers>[1]} options
 */
function liveUsers(t, options = {}) {
  const live = new LiveUsers(SOCKET_URL, { log: () => {}, ...options });
  t.after(() => live.close());
  return live;
}

describe("the whole list", { skip, timeout: TIMEOUT_MS }, () => {
  test("follows creates, renames and deletes made elsewhere", async (t) => {
    const live = liveUsers(t); // the global WebSocket
    await holdsWhatRestSays(live, {});
    const created = await rest("POST", "", { name: uniqueWord() });
    await holdsWhatRestSays(live, {});
    await rest("PATCH", `/${created.id}`, { name: uniqueWord() });
    await holdsWhatRestSays(live, {});
    await rest("DELETE", `/${created.id}`);
    const update = await holdsWhatRestSays(live, {});
    assert.equal(update.total, update.users.length);
    assert.equal(live.state, "live");
  });

  test("commands are acknowledged, and refusals carry the server's errors", async (t) => {
    const live = liveUsers(t);
    const created = await live.create({ name: uniqueWord(), email: "" });
    const email = `${created.id}@example.org`;
    assert.deepEqual(await live.update(created.id, { email }), { ...created, email });
    await assert.rejects(live.create({ name: "  " }), (error) => {
      assert.ok(error instanceof CommandError);
      assert.equal(error.code, "invalid");
      assert.ok(error.errors.name);
      return true;
    });
    assert.equal(await live.delete(created.id), created.id);
    await holdsWhatRestSays(live, {});
  });

  test("iterating yields the newest list and ends at close()", async (t) => {
    const live = liveUsers(t);
    const seen = [];
    for await (const update of live) {
      seen.push(update);
      if (seen.length === 1) await rest("POST", "", { name: uniqueWord() });
      else live.close();
    }
    assert.equal(seen.length, 2);
    assert.equal(seen[1].total, seen[0].total + 1);
    assert.equal(live.state, "closed");
    await assert.rejects(live.create({ name: "After the end" }), /closed/);
  });

  test("changes that do not follow the list held make it start over without resuming", async (t) => {
    const { Tapped, sockets } = tappedWebSocket();
    const live = liveUsers(t, { WebSocket: Tapped });
    const held = await updateWhere(live, () => true);
    const gap = { type: "changes", epoch: held.epoch, from: held.version + 1, version: held.version + 2,
      upserted: [{ id: "999999999", name: "Ghost", email: "" }], deleted: [] };
    sockets[0].dispatchEvent(new MessageEvent("message", { data: JSON.stringify(gap) }));
    const created = await rest("POST", "", { name: uniqueWord() });
    await updateWhere(live, (update) => update.users.some((user) => user.id === created.id));
    assert.equal(sockets.length, 2);
    assert.equal(parameters(sockets[1].url).epoch, undefined);
    assert.equal(sockets[1].received[0].type, "snapshot");
    assert.ok(!live.current?.users.some((user) => user.id === "999999999"));
  });
});

for (const [kind, query] of /** @type {[string, QueryOptions][]} */ ([
  ["the whole list", {}],
  ["a window", { search: "resume", order: "-name", limit: 3 }],
])) {
  test(`${kind}: resumes after a dropped connection with only what changed`, { skip, timeout: TIMEOUT_MS }, async (t) => {
    const { Tapped, sockets } = tappedWebSocket();
    const live = liveUsers(t, { WebSocket: Tapped, ...query });
    await holdsWhatRestSays(live, query);
    sockets[0].close();
    const created = await rest("POST", "", { name: `resume ${uniqueWord()} zz` });
    await updateWhere(live, (update) => update.users.some((user) => user.id === created.id));
    await holdsWhatRestSays(live, query);
    assert.equal(sockets.length, 2);
    const [first, second] = sockets.map((socket) => parameters(socket.url));
    const held = sockets[0].received.at(-1);
    assert.deepEqual(second, { ...first, epoch: held.epoch, version: String(held.version) });
    assert.equal(sockets[1].received[0].type, "changes", "resumed with a change set, not a snapshot");
  });
}

test("a command whose answer a dropped connection lost is sent again unchanged, and made once",
  { skip, timeout: TIMEOUT_MS }, async (t) => {
    const { Tapped, sockets, control } = tappedWebSocket();
    const live = liveUsers(t, { WebSocket: Tapped });
    await updateWhere(live, () => true);
    control.cutAfter = (frame) => frame.action === "create";
    const name = uniqueWord();
    const created = await live.create({ name, email: "" });
    assert.equal(created.name, name);
    const creates = sockets.flatMap((socket) => socket.sent.filter((frame) => frame.action === "create"));
    assert.equal(creates.length, 2);
    assert.deepEqual(creates[0], creates[1]);
    assert.match(creates[0].request_id, /^[0-9a-f]{32}$/);
    assert.equal(parameters(sockets[0].url).client, parameters(sockets[1].url).client);
    assert.equal(parameters(sockets[0].url).client, live.client);
    assert.equal((await restUsers()).filter((user) => user.name === name).length, 1);
  });

describe("a window", { skip, timeout: TIMEOUT_MS }, () => {
  test("holds the first places of the matching users and follows writes made elsewhere", async (t) => {
    const word = uniqueWord();
    for (const name of ["C", "a", "B"]) await rest("POST", "", { name: `${word} ${name}` });
    const query = { search: word, order: /** @type {const} */ ("name"), limit: 2 };
    const { Tapped, sockets } = tappedWebSocket();
    const live = liveUsers(t, { WebSocket: Tapped, ...query });
    const first = await holdsWhatRestSays(live, query);
    assert.deepEqual([first.users.map((user) => user.name), first.total], [[`${word} a`, `${word} B`], 3]);

    const entering = await rest("POST", "", { name: `${word} 0` });
    await holdsWhatRestSays(live, query);
    const leaving = /** @type {User} */ (first.users[0]);
    await rest("PATCH", `/${leaving.id}`, { name: uniqueWord() });
    const update = await holdsWhatRestSays(live, query);
    assert.deepEqual([update.users.map((user) => user.id)[0], update.total], [entering.id, 3]);

    // A write that touches neither the window nor its total sends this socket nothing.
    const framesBefore = sockets[0].received.length;
    const unrelated = await rest("POST", "", { name: uniqueWord() });
    await rest("POST", "", { name: `${word} zz` }); // the total changes: a frame comes
    await updateWhere(live, (next) => next.total === 4);
    const later = sockets[0].received.slice(framesBefore);
    assert.ok(later.every((frame) => !JSON.stringify(frame).includes(unrelated.name)), JSON.stringify(later));
    assert.equal(sockets.length, 1);
  });

  test("query() moves the window on the same connection: an ack, then its snapshot", async (t) => {
    const word = uniqueWord();
    for (const name of ["d", "c", "b", "a"]) await rest("POST", "", { name: `${word} ${name}` });
    const { Tapped, sockets } = tappedWebSocket();
    const live = liveUsers(t, { WebSocket: Tapped, search: word, order: "name", limit: 2 });
    await holdsWhatRestSays(live, { search: word, order: "name", limit: 2 });

    const moved = { search: word, order: /** @type {const} */ ("-id"), limit: 2, offset: 1 };
    const update = await live.query(moved);
    assert.deepEqual({ users: update.users, total: update.total }, expectedWindow(await restUsers(), moved));
    assert.deepEqual(update.query, makeQuery(moved));
    assert.equal(sockets.length, 1);
    const sent = sockets[0].sent.find((frame) => frame.action === "query");
    assert.deepEqual({ ...sent, request_id: undefined }, { action: "query", ...moved, request_id: undefined });
    const answers = sockets[0].received.filter((frame) => frame.request_id === sent.request_id);
    assert.deepEqual(answers.map((frame) => [frame.type, frame.query]), [["ack", makeQuery(moved)]]);

    await rest("POST", "", { name: `${word} e` }); // the newest id: it pushes the window along
    await holdsWhatRestSays(live, moved);

    await assert.rejects(live.query({ limit: 501 }), RangeError);
    assert.deepEqual(live.current?.query, makeQuery(moved));
  });

  test("the newest of several quick query() calls wins, and every call settles", async (t) => {
    const live = liveUsers(t, { order: "id", limit: 5 });
    await updateWhere(live, () => true);
    const calls = [0, 1, 2, 3, 4].map((offset) => live.query({ order: "-id", limit: 5, offset }));
    const settled = await Promise.all(calls);
    assert.deepEqual(settled.at(-1)?.query, makeQuery({ order: "-id", limit: 5, offset: 4 }));
    await holdsWhatRestSays(live, { order: "-id", limit: 5, offset: 4 });
  });
});
