// The rules that need no server: the query's order and bounds, the list frame by frame, the delays.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  Backoff,
  LiveUsers,
  OutOfSyncError,
  UserList,
  compareUsers,
  makeQuery,
  newRequestId,
  queryParameters,
} from "../src/usersite-client.js";

/**
 * @param {string} id
 * @param {string} name
 */
const user = (id, name = `User ${id}`) => ({ id, name, email: "" });
/** @param {{id: string}[]} users */
const ids = (users) => users.map((each) => each.id);

/**
 * @param {import("../src/usersite-client.js").Order} order
 * @param {{id: string, name: string, email: string}[]} users
 */
const sorted = (order, users) => ids([...users].sort(compareUsers(order)));

describe("the order", () => {
  test("name compares ASCII letters lowercased, then code points, ties by id", () => {
    const users = [user("3", "bob"), user("1", "Bob"), user("2", "alice"), user("4", "Émile"), user("5", "_x")];
    // "_" (U+005F) comes after "B" (U+0042) but before "b": "Bob" is compared as "bob".
    assert.deepEqual(sorted("name", users), ["5", "2", "1", "3", "4"]);
  });

  test("-name reverses the names and still breaks ties by id ascending", () => {
    const users = [user("3", "bob"), user("1", "Bob"), user("2", "alice")];
    assert.deepEqual(sorted("-name", users), ["1", "3", "2"]);
  });

  test("names compare by code point, not by UTF-16 unit", () => {
    // U+FF5E is one unit above U+D83D, the first unit of U+1F600: by units the emoji would come first.
    const users = [user("1", "\u{1F600}"), user("2", "\uFF5E")];
    assert.deepEqual(sorted("name", users), ["2", "1"]);
    assert.deepEqual(sorted("-name", users), ["1", "2"]);
  });

  test("only A to Z are lowercased, not other letters a locale would change", () => {
    const users = [user("1", "É"), user("2", "é"), user("3", "Z")];
    // "É" (U+00C9) < "é" (U+00E9), and both after "z".
    assert.deepEqual(sorted("name", users), ["3", "1", "2"]);
  });

  test("ids compare as integers, past 2^53 too", () => {
    const users = [user("10"), user("9"), user("9007199254740993"), user("9007199254740992")];
    assert.deepEqual(sorted("id", users), ["9", "10", "9007199254740992", "9007199254740993"]);
    assert.deepEqual(sorted("-id", users), ["9007199254740993", "9007199254740992", "10", "9"]);
  });
});

describe("a query", () => {
  test("takes its defaults and leaves them out of the URL", () => {
    assert.deepEqual(makeQuery(), { search: "", order: "id", limit: null, offset: 0 });
    assert.deepEqual(queryParameters(makeQuery()), {});
    const query = makeQuery({ search: "ada", order: "-name", limit: 20, offset: 40 });
    assert.deepEqual(queryParameters(query), { search: "ada", order: "-name", limit: "20", offset: "40" });
  });

  test("out of the server's bounds is refused before it is sent", () => {
    assert.throws(() => makeQuery({ limit: 0 }), RangeError);
    assert.throws(() => makeQuery({ limit: 501 }), RangeError);
    assert.throws(() => makeQuery({ limit: 2.5 }), RangeError);
    assert.throws(() => makeQuery({ offset: 10 }), /only with a limit/);
    assert.throws(() => makeQuery({ order: /** @type {any} */ ("email") }), RangeError);
    assert.throws(() => makeQuery({ search: "x".repeat(101) }), RangeError);
    // 100 characters as the server counts them (code points), 200 UTF-16 units.
    assert.equal(makeQuery({ search: "\u{1F600}".repeat(100) }).search.length, 200);
  });
});

describe("UserList", () => {
  const nameQuery = makeQuery({ order: "name", limit: 3 });

  /** @param {object} fields */
  const snapshot = (fields) => ({ type: "snapshot", epoch: "e1", version: 10, users: [], ...fields });
  /** @param {object} fields */
  const changes = (fields) => ({ type: "changes", epoch: "e1", from: 10, version: 11, upserted: [], deleted: [], ...fields });

  test("a window's changes are placed by the query's order, renames moving users", () => {
    const list = new UserList();
    list.applySnapshot(snapshot({ users: [user("2", "Ann"), user("1", "Bea"), user("3", "Cy")], total: 5 }), nameQuery);
    const update = list.applyChanges(changes({ upserted: [user("3", "Al"), user("4", "Bo")], deleted: ["1"], total: 5 }));
    assert.deepEqual(ids(update?.users ?? []), ["3", "2", "4"]);
    assert.equal(update?.total, 5);
    assert.deepEqual(update?.deleted, ["1"]);
  });

  test("the whole list without a query counts its own users as the total", () => {
    const list = new UserList();
    list.applySnapshot(snapshot({ users: [user("1"), user("2")] }));
    assert.equal(list.applyChanges(changes({ upserted: [user("3")] }))?.total, 3);
  });

  test("changes from another version or epoch raise and change nothing", () => {
    const list = new UserList();
    list.applySnapshot(snapshot({ users: [user("1")] }));
    assert.throws(() => list.applyChanges(changes({ from: 9 })), OutOfSyncError);
    assert.throws(() => list.applyChanges(changes({ epoch: "e2" })), OutOfSyncError);
    assert.throws(() => list.applyChanges(changes({ upserted: [{ id: 5 }] })), OutOfSyncError);
    assert.deepEqual([list.version, ids(list.users)], [10, ["1"]]);
  });

  test("a deleted id the list does not hold is ignored; an empty resume moves nothing", () => {
    const list = new UserList();
    list.applySnapshot(snapshot({ users: [user("1")] }));
    assert.equal(list.applyChanges(changes({ from: 10, version: 10 })), null);
    assert.deepEqual(list.applyChanges(changes({ deleted: ["7"] }))?.deleted, []);
  });

  test("a snapshot of the same window no newer than the list is ignored; another query's is not", () => {
    const list = new UserList();
    list.applySnapshot(snapshot({ users: [user("1")] }));
    assert.equal(list.applySnapshot(snapshot({ version: 9, users: [] })), null);
    const other = list.applySnapshot(snapshot({ users: [user("2", "B"), user("1", "A")], total: 2 }), nameQuery);
    assert.deepEqual([other?.query, ids(other?.users ?? [])], [nameQuery, ["1", "2"]]);
  });
});

test("backoff doubles up to its cap, shortened by up to half at random", () => {
  const delays = new Backoff(500, 2000, () => 1);
  assert.deepEqual([1, 2, 3, 4].map(() => delays.nextDelayMs()), [250, 500, 1000, 1000]);
  delays.reset();
  assert.equal(delays.nextDelayMs(), 250);
});

test("request ids are UUID4s in hex", () => {
  assert.match(newRequestId(), /^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
  assert.notEqual(newRequestId(), newRequestId());
});

test("without a global WebSocket, LiveUsers asks for a constructor", (t) => {
  const builtin = globalThis.WebSocket;
  // @ts-ignore: as in Node 20 without --experimental-websocket
  delete globalThis.WebSocket;
  t.after(() => {
    globalThis.WebSocket = builtin;
  });
  assert.throws(() => new LiveUsers("ws://127.0.0.1:9/api/v1/users/ws"), /pass one/);
});

/**
 * A socket that answers each command with the next of `answers`' codes, then an ack.
 * @param {string[]} answers error codes, in order
 * @param {string[]} sent where each frame sent is recorded
 */
function scriptedSocket(answers, sent) {
  return class {
    readyState = 1;
    protocol = "users.v2";
    /** @type {Record<string, ((event: any) => void)[]>} */
    listeners = { open: [], message: [], close: [] };
    constructor() {
      setTimeout(() => this.emit("open", {}));
    }
    /** @param {string} type @param {(event: any) => void} listener */
    addEventListener(type, listener) {
      this.listeners[type].push(listener);
    }
    /** @param {string} type @param {any} event */
    emit(type, event) {
      for (const listener of this.listeners[type]) listener(event);
    }
    /** @param {string} data */
    send(data) {
      sent.push(data);
      const { request_id } = JSON.parse(data);
      const code = answers.shift();
      const answer = code
        ? { type: "error", code, message: `Said ${code}.`, request_id }
        : { type: "ack", request_id, user: user("2", "Grace"), version: 2 };
      setTimeout(() => this.emit("message", { data: JSON.stringify(answer) }));
    }
    close() {
      this.readyState = 3;
    }
  };
}

for (const code of ["unavailable", "outcome_unknown"]) {
  test(`a command answered ${code} is sent again with its request id`, async () => {
    /** @type {string[]} */
    const sent = [];
    const live = new LiveUsers("ws://127.0.0.1:9/api/v1/users/ws", {
      WebSocket: scriptedSocket([code, code], sent),
    });
    live.rateLimitWaitMs = 1;
    try {
      assert.deepEqual(await live.create({ name: "Grace", email: "" }), user("2", "Grace"));
    } finally {
      live.close();
    }
    assert.equal(sent.length, 3);
    assert.equal(new Set(sent).size, 1, "each send is the same command, with the same request id");
  });
}

test("a command the database still fails after its retries, or that failed otherwise, rejects", async () => {
  /** @type {string[]} */
  const sent = [];
  const live = new LiveUsers("ws://127.0.0.1:9/api/v1/users/ws", {
    WebSocket: scriptedSocket(["unavailable", "unavailable", "unavailable", "server_error"], sent),
  });
  live.rateLimitWaitMs = 1;
  live.unavailableRetries = 2;
  try {
    await assert.rejects(live.create({ name: "Grace", email: "" }), { code: "unavailable" });
    await assert.rejects(live.create({ name: "Ada", email: "" }), { code: "server_error" });
  } finally {
    live.close();
  }
  assert.equal(sent.length, 4);
});
