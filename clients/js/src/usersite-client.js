// usersite-client: the live list of users of a usersite server, or a searched,
// ordered window of it, kept current over protocol v2 (docs/protocol.md) across
// dropped connections; and writes that are acknowledged and never doubled.
// The same behaviour as the Python client (clients/python). One ES module, no
// dependencies, no build step: for browsers and Node.js 20 or later.

export const SUBPROTOCOL = "users.v2";
const TOKEN_PREFIX = "token.";

/** @type {readonly Order[]} */
export const ORDERS = Object.freeze(["id", "-id", "name", "-name"]);
// The server's bounds for a query (users/queries.py). Checked here too: a
// query refused in the URL gets no list at all, only an error frame.
export const MAX_LIMIT = 500;
export const MAX_OFFSET = 10_000_000;
export const MAX_SEARCH_LENGTH = 100;
// The server's cap on a frame's characters. It answers a longer frame without
// reading it, so without the command's request_id: the command would wait forever.
export const MAX_FRAME_LENGTH = 65536;

const QUERY_PARAMETERS = ["search", "order", "limit", "offset"];
const RESUME_PARAMETERS = ["epoch", "version"];
const OPEN = 1; // WebSocket.OPEN, which a caller's constructor may not carry as a static

/**
 * @typedef {{id: string, name: string, email: string}} User
 * @typedef {"id" | "-id" | "name" | "-name"} Order
 * @typedef {{search?: string, order?: Order, limit?: number | null, offset?: number}} QueryOptions
 *   Absent fields take their defaults: every user, by id, no window.
 * @typedef {Readonly<{search: string, order: Order, limit: number | null, offset: number}>} Query
 *
 * @typedef {object} Update The list (or window) after one frame moved it forward.
 * @property {string} epoch
 * @property {number} version
 * @property {Query} query The query whose users these are.
 * @property {readonly User[]} users The window (or the whole matching list), in the query's order.
 * @property {number} total How many users match the search, the window's or not.
 * @property {boolean} snapshot Whether the whole list or window came at once (a connect, a new query, a new epoch).
 * @property {readonly User[]} upserted
 * @property {readonly string[]} deleted Only ids that the list held.
 *
 * @typedef {"connecting" | "live" | "reconnecting" | "closed"} ConnectionState
 *
 * @typedef {object} WebSocketLike The part of the standard WebSocket this module uses.
 * @property {number} readyState
 * @property {string} protocol
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {(type: string, listener: (event: any) => void) => void} addEventListener
 *
 * @typedef {new (url: string, protocols: string[]) => WebSocketLike} WebSocketConstructor
 *
 * @typedef {object} LiveUsersOptions
 * @property {string | null} [token] An API token, offered as the subprotocol `token.<key>`: out of URLs and logs.
 * @property {WebSocketConstructor} [WebSocket] Where there is no global WebSocket (Node 20 without
 *   --experimental-websocket): the `ws` package's, say.
 * @property {Backoff} [reconnect] The delays between connections (default: 0.5 s doubling to 30 s).
 * @property {number} [openTimeoutMs] A handshake that takes longer is given up and tried again (10 s).
 * @property {(message: string) => void} [log] Where to say that a connection was lost (console.warn).
 */

/** A command the server refused: its error frame's code, message (as `detail`) and field errors. */
export class CommandError extends Error {
  /**
   * @param {string} code
   * @param {string} detail
   * @param {Record<string, string[]>} [errors]
   */
  constructor(code, detail, errors = {}) {
    super(`${code}: ${detail}`);
    this.name = "CommandError";
    this.code = code;
    this.detail = detail;
    this.errors = errors;
  }
}

/** The server turned the socket down in a way that trying again would not change. */
export class HandshakeError extends Error {
  name = "HandshakeError";
}

/** The list cannot follow this frame; only a new snapshot can bring it back. */
export class OutOfSyncError extends Error {
  name = "OutOfSyncError";
}

/**
 * Delays that double from `firstMs` up to `capMs`, each shortened by a random part.
 * The random part (up to half the delay) keeps clients that lost the same server
 * at the same moment from all coming back at the same moment.
 */
export class Backoff {
  failures = 0;

  /**
   * @param {number} [firstMs]
   * @param {number} [capMs]
   * @param {() => number} [random]
   */
  constructor(firstMs = 500, capMs = 30_000, random = Math.random) {
    this.firstMs = firstMs;
    this.capMs = capMs;
    this.random = random;
  }

  /** Return the delay before the next attempt, and lengthen the one after. */
  nextDelayMs() {
    const delay = Math.min(this.capMs, this.firstMs * 2 ** this.failures);
    if (delay < this.capMs) this.failures += 1;
    return delay * (1 - this.random() / 2);
  }

  /** Start again from `firstMs`: the last attempt worked. */
  reset() {
    this.failures = 0;
  }
}

/** @type {Query} */
export const WHOLE_LIST = Object.freeze({ search: "", order: "id", limit: null, offset: 0 });

/**
 * Return the query `options` describe, with defaults filled in; throw a
 * RangeError where the server would refuse it.
 * @param {QueryOptions} [options]
 * @returns {Query}
 */
export function makeQuery(options = {}) {
  const { search = "", order = "id", limit = null, offset = 0 } = options;
  // The server counts characters as Python does: code points, not UTF-16 units.
  if (typeof search !== "string" || [...search].length > MAX_SEARCH_LENGTH || search.includes("\0")) {
    throw new RangeError(`search: text of at most ${MAX_SEARCH_LENGTH} characters.`);
  }
  if (!ORDERS.includes(order)) throw new RangeError(`order: one of ${ORDERS.join(", ")}.`);
  if (limit !== null && !isWholeNumber(limit, 1, MAX_LIMIT)) {
    throw new RangeError(`limit: a whole number from 1 to ${MAX_LIMIT}.`);
  }
  if (!isWholeNumber(offset, 0, MAX_OFFSET)) {
    throw new RangeError(`offset: a whole number from 0 to ${MAX_OFFSET}.`);
  }
  if (offset && limit === null) throw new RangeError("offset: only with a limit.");
  return Object.freeze({ search, order, limit, offset });
}

/**
 * @param {unknown} value
 * @param {number} lowest
 * @param {number} highest
 */
function isWholeNumber(value, lowest, highest) {
  return Number.isInteger(value) && /** @type {number} */ (value) >= lowest && /** @type {number} */ (value) <= highest;
}

/**
 * @param {Query} a
 * @param {Query} b
 */
export function sameQuery(a, b) {
  return a.search === b.search && a.order === b.order && a.limit === b.limit && a.offset === b.offset;
}

/**
 * Return the query's URL parameters, defaults left out, as the server reads them.
 * @param {Query} query
 * @returns {Record<string, string>}
 */
export function queryParameters(query) {
  /** @type {Record<string, string>} */
  const parameters = {};
  if (query.search) parameters.search = query.search;
  if (query.order !== "id") parameters.order = query.order;
  if (query.limit !== null) parameters.limit = String(query.limit);
  if (query.offset) parameters.offset = String(query.offset);
  return parameters;
}

// --- The order -----------------------------------------------------------------

/**
 * Order ids, decimal strings of any length, as integers without converting
 * them: Number() would round ids past 2^53.
 * @param {string} a
 * @param {string} b
 */
export function compareIds(a, b) {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

/**
 * Compare by Unicode code point, as the server (Python, PostgreSQL's "C"
 * collation, SQLite) does. JavaScript's `<` compares UTF-16 units, which puts
 * characters past U+FFFF (two units from U+D800) before U+E000 to U+FFFF.
 * @param {string} a
 * @param {string} b
 */
export function compareCodePoints(a, b) {
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index++) {
    if (a.charCodeAt(index) !== b.charCodeAt(index)) {
      // At the first differing unit: a whole code point where a pair starts
      // here, and a lone low surrogate where the high ones before were equal.
      return /** @type {number} */ (a.codePointAt(index)) - /** @type {number} */ (b.codePointAt(index));
    }
  }
  return a.length - b.length;
}

const ASCII_UPPER = /[A-Z]/g;

/**
 * A name as the `name` order compares it: ASCII letters lowercased, A to Z only
 * (not a locale's lowercasing, which differs between runtimes and from the server's).
 * @param {string} name
 */
export function sortName(name) {
  return name.replace(ASCII_UPPER, (letter) => String.fromCharCode(letter.charCodeAt(0) + 32));
}

/**
 * Return the comparison of users in `order`: ties by id ascending, `-name` included.
 * @param {Order} order
 * @returns {(a: User, b: User) => number}
 */
export function compareUsers(order) {
  switch (order) {
    case "id":
      return (a, b) => compareIds(a.id, b.id);
    case "-id":
      return (a, b) => compareIds(b.id, a.id);
    case "name":
      return (a, b) => compareCodePoints(sortName(a.name), sortName(b.name)) || compareIds(a.id, b.id);
    case "-name":
      return (a, b) => compareCodePoints(sortName(b.name), sortName(a.name)) || compareIds(a.id, b.id);
    default:
      throw new RangeError(`order: one of ${ORDERS.join(", ")}.`);
  }
}

// --- The list, frame by frame ---------------------------------------------------

/**
 * The newest list (or window) a client holds, with the epoch and version it is at.
 *
 * `applySnapshot` and `applyChanges` return an Update when a frame moved the
 * list forward, and null when it did not (a resume with nothing new, a
 * snapshot no newer than the list). A frame they cannot apply exactly (changes
 * from another version or epoch, a malformed frame) throws OutOfSyncError and
 * changes nothing: only a new snapshot brings the list back. No socket here,
 * so tests can drive it frame by frame.
 */
export class UserList {
  /** @type {string | null} */ epoch = null;
  /** @type {number | null} */ version = null;
  /** @type {Query} */ query = WHOLE_LIST;
  total = 0;
  /** @type {Map<string, User>} */ #byId = new Map();
  /** @type {User[]} */ #ordered = []; // in the query's order, which has no ties
  #compare = compareUsers("id");

  /** The users held, in the query's order (a copy). */
  get users() {
    return Object.freeze(this.#ordered.slice());
  }

  /**
   * Apply a `snapshot` frame of `query`'s window.
   * @param {any} frame
   * @param {Query} [query]
   * @returns {Update | null}
   */
  applySnapshot(frame, query = WHOLE_LIST) {
    const epoch = text(frame, "epoch");
    const version = integer(frame, "version");
    const users = userList(frame, "users");
    const total = optionalTotal(frame);
    const sameWindow = sameQuery(query, this.query) && epoch === this.epoch;
    if (sameWindow && this.version !== null && version <= this.version) return null; // never go back
    const compare = compareUsers(query.order);
    if (!users.every((user, index) => index === 0 || compare(users[index - 1], user) < 0)) {
      users.sort(compare); // the server sends its order; a stray one must not break the binary searches
    }
    this.epoch = epoch;
    this.version = version;
    this.query = query;
    this.#compare = compare;
    this.#byId = new Map(users.map((user) => [user.id, user]));
    this.#ordered = users;
    this.total = total ?? users.length;
    return this.#update(true, [], []);
  }

  /**
   * Apply a `changes` frame to the list held.
   * @param {any} frame
   * @returns {Update | null}
   */
  applyChanges(frame) {
    const epoch = text(frame, "epoch");
    const start = integer(frame, "from");
    const version = integer(frame, "version");
    const upserted = userList(frame, "upserted");
    const deleted = idList(frame, "deleted");
    const total = optionalTotal(frame);
    if (this.epoch === null) throw new OutOfSyncError("changes came before any snapshot");
    if (epoch !== this.epoch) throw new OutOfSyncError(`changes in epoch ${epoch}; the list is in ${this.epoch}`);
    if (start !== this.version) {
      throw new OutOfSyncError(`changes from version ${start}; the list is at ${this.version}`);
    }
    if (version < start || (version === start && (upserted.length || deleted.length))) {
      throw new OutOfSyncError(`changes from version ${start} to ${version}`);
    }
    if (version === start) return null; // a resume that found nothing new
    for (const user of upserted) {
      this.#remove(user.id);
      this.#ordered.splice(this.#position(user), 0, user);
      this.#byId.set(user.id, user);
    }
    // An id the list does not hold was created and deleted in between.
    const removed = deleted.filter((id) => this.#remove(id));
    this.version = version;
    this.total = total ?? this.#ordered.length;
    return this.#update(false, upserted, removed);
  }

  /**
   * @param {boolean} snapshot
   * @param {User[]} upserted
   * @param {string[]} deleted
   * @returns {Update}
   */
  #update(snapshot, upserted, deleted) {
    return Object.freeze({
      epoch: /** @type {string} */ (this.epoch),
      version: /** @type {number} */ (this.version),
      query: this.query,
      users: this.users,
      total: this.total,
      snapshot,
      upserted: Object.freeze(upserted),
      deleted: Object.freeze(deleted),
    });
  }

  /**
   * Remove a user by id; return whether the list held it.
   * @param {string} id
   */
  #remove(id) {
    const held = this.#byId.get(id);
    if (held === undefined) return false;
    this.#ordered.splice(this.#position(held), 1);
    this.#byId.delete(id);
    return true;
  }

  /**
   * Where `user` is, or would go, in the ordered list: a binary search.
   * @param {User} user
   */
  #position(user) {
    let low = 0;
    let high = this.#ordered.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#compare(this.#ordered[middle], user) < 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

/**
 * @param {any} frame
 * @param {string} key
 * @returns {string}
 */
function text(frame, key) {
  if (typeof frame[key] !== "string") throw new OutOfSyncError(`${frame.type} frame without a text ${key}`);
  return frame[key];
}

/**
 * @param {any} frame
 * @param {string} key
 * @returns {number}
 */
function integer(frame, key) {
  if (!Number.isSafeInteger(frame[key])) throw new OutOfSyncError(`${frame.type} frame without an integer ${key}`);
  return frame[key];
}

/**
 * @param {any} frame
 * @returns {number | null}
 */
function optionalTotal(frame) {
  if (frame.total === undefined) return null; // a whole list without a query: its length
  if (!Number.isSafeInteger(frame.total) || frame.total < 0) {
    throw new OutOfSyncError(`${frame.type} frame with a total that is not a count`);
  }
  return frame.total;
}

/** @param {unknown} value */
function isId(value) {
  return typeof value === "string" && /^[0-9]+$/.test(value);
}

/**
 * @param {any} frame
 * @param {string} key
 * @returns {string[]}
 */
function idList(frame, key) {
  const values = frame[key];
  if (!Array.isArray(values) || !values.every(isId)) {
    throw new OutOfSyncError(`${frame.type} frame without a list of ids in ${key}`);
  }
  return values;
}

/**
 * @param {any} frame
 * @param {string} key
 * @returns {User[]}
 */
function userList(frame, key) {
  const values = frame[key];
  const isUser = (/** @type {any} */ value) =>
    value !== null && typeof value === "object" && isId(value.id) &&
    typeof value.name === "string" && typeof value.email === "string";
  if (!Array.isArray(values) || !values.every(isUser)) {
    throw new OutOfSyncError(`${frame.type} frame without a list of users in ${key}`);
  }
  // A copy of the three fields: nothing else the frame held is kept, and later lists share them.
  return values.map(({ id, name, email }) => Object.freeze({ id, name, email }));
}

// --- Ids ----------------------------------------------------------------------

/**
 * A random UUID4 in hex, for request ids and the client's name. Made from
 * getRandomValues, which exists where crypto.randomUUID does not (a page
 * served over plain HTTP on an address other than localhost).
 */
export function newRequestId() {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
  bytes[8] = (bytes[8] & 0x3f) | 0x80; // the RFC 4122 variant
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

// --- The live list ---------------------------------------------------------------

/**
 * The live list of users of a usersite server, or a window of it, and commands to change it.
 *
 *     const live = new LiveUsers("ws://host/api/v1/users/ws", { search: "ada", order: "name", limit: 50 });
 *     live.onUpdate(({ users, total }) => render(users, total));
 *     await live.create({ name: "Ada", email: "ada@example.org" });
 *     await live.query({ order: "-id", limit: 50, offset: 100 });
 *     live.close();
 *
 * It connects at once, and again after a lost connection (waiting `reconnect`'s
 * delays), resuming from the window it holds; it starts over from a snapshot
 * when it cannot follow the server.
 */
export class LiveUsers {
  // A rate-limited command waits and is sent again this many times before it
  // fails with CommandError("rate_limited"); the server refills 5 writes a second.
  rateLimitRetries = 4;
  // The first of those waits; they double up to rateLimitMaxWaitMs.
  rateLimitWaitMs = 250;
  rateLimitMaxWaitMs = 2000;
  // A command the server's database failed to carry out ("unavailable": not
  // written; "outcome_unknown": perhaps written) waits as a rate-limited one
  // does and is sent again with its request id, which the server never
  // carries out twice, this many times before it fails.
  unavailableRetries = 8;

  /** @type {WebSocketConstructor} */ #WebSocket;
  /** @type {ConnectionState} */ #state = "connecting";
  #list = new UserList();
  /** @type {Update | null} */ #latest = null;
  /** @type {Set<(update: Update) => void>} */ #updateListeners = new Set();
  /** @type {Set<(state: ConnectionState) => void>} */ #stateListeners = new Set();
  // Commands not yet answered, by request id: each frame is sent unchanged on every new connection.
  /** @type {Map<string, {text: string, sentOn: WebSocketLike | null, answer: (frame: any) => void}>} */
  #outbox = new Map();
  /** @type {WebSocketLike | null} */ #socket = null;
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #reconnectTimer;
  #startingOver = false; // the next connection asks for a snapshot, not changes
  /** @type {Error | null} */ #failure = null; // what commands fail with once ended
  /** @type {Error | null} */ #endError = null; // what ended it, when not close()

  // The query the caller asked for last, the one the socket's subscription is
  // on, and the one whose snapshot comes next (after a query's ack).
  /** @type {Query} */ #wanted;
  /** @type {Query} */ #subscribed;
  /** @type {Query | null} */ #snapshotFor = null;
  /** @type {{query: Query, requestId: string, acked: boolean} | null} */ #queryInFlight = null;
  /** @type {{query: Query, resolve: (update: Update) => void, reject: (error: Error) => void}[]} */
  #queryWaiters = [];
  #queryWaits = new Backoff(250, 2000);
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #queryRetryTimer;

  /**
   * @param {string | URL} url The socket's URL, `ws://host/api/v1/users/ws`.
   * @param {QueryOptions & LiveUsersOptions} [options] The query to follow (default: the whole list), and how.
   */
  constructor(url, options = {}) {
    const { token = null, reconnect = new Backoff(), openTimeoutMs = 10_000 } = options;
    const WebSocketClass = options.WebSocket ?? /** @type {any} */ (globalThis).WebSocket;
    if (typeof WebSocketClass !== "function") {
      throw new TypeError(
        "There is no global WebSocket here (Node 20 needs --experimental-websocket): " +
          "pass one, as in new LiveUsers(url, { WebSocket }) with the ws package's.",
      );
    }
    this.url = new URL(url);
    this.token = token;
    this.reconnect = reconnect;
    this.openTimeoutMs = openTimeoutMs;
    this.log = options.log ?? ((message) => console.warn(message));
    /** @type {WebSocketConstructor} */
    this.#WebSocket = WebSocketClass;
    // This client's name for the server's request-id receipts: a command resent
    // after a reconnect is known again, and never taken for another anonymous client's.
    this.client = newRequestId();
    this.#wanted = this.#subscribed = makeQuery(options);
    this.#connect();
  }

  /** How the connection is: before the first list, following the server, waiting to reconnect, or ended. */
  get state() {
    return this.#state;
  }

  /** The newest Update, or null before the first list. */
  get current() {
    return this.#latest;
  }

  /**
   * Call `listener` with every Update from now on, the current list first (as a
   * snapshot) if there is one; return a function that stops it.
   * @param {(update: Update) => void} listener
   */
  onUpdate(listener) {
    this.#updateListeners.add(listener);
    if (this.#latest) call(listener, { ...this.#latest, snapshot: true, upserted: [], deleted: [] });
    return () => {
      this.#updateListeners.delete(listener);
    };
  }

  /**
   * Call `listener` with the connection's state whenever it changes, the current one first.
   * @param {(state: ConnectionState) => void} listener
   */
  onState(listener) {
    this.#stateListeners.add(listener);
    call(listener, this.#state);
    return () => {
      this.#stateListeners.delete(listener);
    };
  }

  /**
   * Yield the newest Update each time the list changes: a reader slower than the
   * changes skips to the newest, never to an older one. Ends at close(), or
   * throws what ended the client.
   * @returns {AsyncGenerator<Update, void, undefined>}
   */
  async *[Symbol.asyncIterator]() {
    /** @type {Update | null} */ let waiting = null;
    /** @type {(() => void) | null} */ let wake = null;
    const stop = this.onUpdate((update) => {
      waiting = update;
      wake?.();
    });
    const stopState = this.onState(() => wake?.());
    try {
      while (true) {
        if (waiting === null && this.#state === "closed") {
          if (this.#endError) throw this.#endError;
          return;
        }
        if (waiting === null) await new Promise((resolve) => (wake = () => resolve(undefined)));
        wake = null;
        if (waiting !== null) {
          const update = /** @type {Update} */ (waiting);
          waiting = null;
          yield update;
        }
      }
    } finally {
      stop();
      stopState();
    }
  }

  /**
   * Follow another query without reconnecting; resolve with its window once
   * held (or with the window of a query asked for after it, which replaced it);
   * reject with a RangeError, sending nothing, where the server would refuse it.
   * Fields left out take their defaults: every user, by id, no window.
   * @param {QueryOptions} [options]
   * @returns {Promise<Update>}
   */
  query(options = {}) {
    let query;
    try {
      query = makeQuery(options);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#queryWaiters.push({ query, resolve, reject });
      this.#wanted = query;
      this.#sendWantedQuery();
      this.#settleQueryWaiters();
    });
  }

  /**
   * Create a user; resolve with it as the server stored it.
   * @param {{name: string, email?: string}} fields
   * @returns {Promise<User>}
   */
  async create({ name, email = "" }) {
    const ack = await this.#command({ action: "create", name, email });
    return ack.user;
  }

  /**
   * Change the given fields of user `id`; resolve with the user as it is now.
   * @param {string | number} id
   * @param {{name?: string, email?: string}} fields
   * @returns {Promise<User>}
   */
  async update(id, { name, email }) {
    const changed = Object.fromEntries(Object.entries({ name, email }).filter(([, value]) => value !== undefined));
    const ack = await this.#command({ action: "update", id: String(id), ...changed });
    return ack.user;
  }

  /**
   * Delete user `id`; resolve with its id.
   * @param {string | number} id
   * @returns {Promise<string>}
   */
  async delete(id) {
    const ack = await this.#command({ action: "delete", id: String(id) });
    return ack.deleted;
  }

  /** Close the connection for good: iterators end, and commands still waiting fail. */
  close() {
    this.#end(null);
  }

  /**
   * Send a command until it is answered; resolve with its ack, or reject with its error.
   * @param {Record<string, unknown>} fields
   * @returns {Promise<any>}
   */
  async #command(fields) {
    if (this.#failure) throw this.#failure;
    const requestId = newRequestId();
    const text = JSON.stringify({ ...fields, request_id: requestId });
    if ([...text].length > MAX_FRAME_LENGTH) {
      throw new CommandError("too_large", `The command is over ${MAX_FRAME_LENGTH} characters.`);
    }
    const waits = new Backoff(this.rateLimitWaitMs, this.rateLimitMaxWaitMs);
    /** @type {Record<string, number>} */
    const retriesLeft = {
      rate_limited: this.rateLimitRetries,
      unavailable: this.unavailableRetries,
      outcome_unknown: this.unavailableRetries,
    };
    for (;;) {
      const answer = await this.#run(requestId, text);
      if (answer.type === "ack") return answer;
      const error = new CommandError(String(answer.code), String(answer.message), answer.errors);
      if (!retriesLeft[error.code]) throw error;
      // The same request id again: an earlier send of it may have been carried
      // out before a lost connection, and must not be doubled.
      retriesLeft[error.code] -= 1;
      await new Promise((resolve) => setTimeout(resolve, waits.nextDelayMs()));
      if (this.#failure) throw this.#failure;
    }
  }

  /**
   * Send a command now if connected, else on connecting; resolve with its ack or error frame.
   * @param {string} requestId
   * @param {string} text
   * @returns {Promise<any>}
   */
  #run(requestId, text) {
    return new Promise((resolve, reject) => {
      const pending = {
        text,
        sentOn: /** @type {WebSocketLike | null} */ (null),
        answer: (/** @type {any} */ frame) => {
          this.#outbox.delete(requestId);
          if (frame instanceof Error) reject(frame);
          else resolve(frame);
        },
      };
      this.#outbox.set(requestId, pending);
      if (this.#socket?.readyState === OPEN) this.#send(pending, this.#socket);
    });
  }

  /**
   * @param {{text: string, sentOn: WebSocketLike | null}} pending
   * @param {WebSocketLike} socket
   */
  #send(pending, socket) {
    pending.sentOn = socket;
    socket.send(pending.text);
  }

  #url() {
    const url = new URL(this.url);
    for (const name of [...QUERY_PARAMETERS, ...RESUME_PARAMETERS, "client"]) url.searchParams.delete(name);
    url.searchParams.set("client", this.client);
    for (const [name, value] of Object.entries(queryParameters(this.#wanted))) url.searchParams.set(name, value);
    // Resume only the window held: another query's starts from its snapshot.
    const list = this.#list;
    if (!this.#startingOver && list.epoch !== null && sameQuery(list.query, this.#wanted)) {
      url.searchParams.set("epoch", list.epoch);
      url.searchParams.set("version", String(list.version));
    }
    return url.href;
  }

  #connect() {
    this.#reconnectTimer = undefined;
    const protocols = [SUBPROTOCOL, ...(this.token ? [TOKEN_PREFIX + this.token] : [])];
    const socket = new this.#WebSocket(this.#url(), protocols);
    this.#socket = socket;
    this.#subscribed = this.#wanted;
    this.#snapshotFor = null;
    this.#queryInFlight = null;
    const openTimer = setTimeout(() => this.#drop(socket, "the handshake took too long"), this.openTimeoutMs);
    // A socket given up on may still deliver frames, and its close comes
    // later: only the current socket's events count.
    socket.addEventListener("open", () => {
      clearTimeout(openTimer);
      if (socket === this.#socket) this.#opened(socket);
    });
    socket.addEventListener("message", (event) => {
      if (socket === this.#socket) this.#receive(socket, event.data);
    });
    socket.addEventListener("close", (event) => {
      clearTimeout(openTimer);
      if (socket === this.#socket) this.#drop(socket, `the connection closed (code ${event.code})`);
    });
  }

  /** @param {WebSocketLike} socket */
  #opened(socket) {
    if (socket.protocol !== SUBPROTOCOL) {
      this.#end(new HandshakeError(
        `${this.url} does not speak ${SUBPROTOCOL} (it chose "${socket.protocol}"); ` +
          "upgrade the server or use protocol v1.",
      ));
      return;
    }
    for (const pending of this.#outbox.values()) {
      if (pending.sentOn !== socket) this.#send(pending, socket);
    }
    this.#sendWantedQuery();
  }

  /**
   * Give up on `socket` and connect again after the next delay.
   * @param {WebSocketLike} socket
   * @param {string} reason
   */
  #drop(socket, reason) {
    if (socket !== this.#socket) return;
    this.#socket = null;
    socket.close();
    this.log(`usersite-client: ${reason}; connecting again to ${this.url}`);
    this.#setState(this.#state === "connecting" ? "connecting" : "reconnecting");
    this.#reconnectTimer = setTimeout(() => this.#connect(), this.reconnect.nextDelayMs());
  }

  /**
   * @param {WebSocketLike} socket
   * @param {unknown} data
   */
  #receive(socket, data) {
    let frame;
    try {
      frame = JSON.parse(/** @type {string} */ (data));
    } catch {
      frame = null;
    }
    if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
      this.#startOver(socket, new OutOfSyncError("a frame that is not a JSON object"));
      return;
    }
    if (frame.type === "snapshot" || frame.type === "changes") this.#receiveList(socket, frame);
    else if (frame.type === "ack" || frame.type === "error") this.#receiveAnswer(frame);
    // Frames of other types are ignored: a later server may add some.
  }

  /**
   * @param {WebSocketLike} socket
   * @param {any} frame
   */
  #receiveList(socket, frame) {
    let update;
    try {
      if (frame.type === "snapshot") {
        const query = this.#snapshotFor ?? this.#subscribed;
        this.#snapshotFor = null;
        if (this.#queryInFlight?.acked) this.#queryInFlight = null;
        update = this.#list.applySnapshot(frame, query);
      } else {
        update = this.#list.applyChanges(frame);
      }
    } catch (error) {
      if (!(error instanceof OutOfSyncError)) throw error;
      this.#startOver(socket, error);
      return;
    }
    // The connection works and the list follows it: the next loss waits the
    // shortest delay again, and may resume.
    this.reconnect.reset();
    this.#startingOver = false;
    this.#setState("live");
    if (update !== null) this.#publish(update);
    this.#sendWantedQuery();
    this.#settleQueryWaiters();
  }

  /**
   * Drop a list that cannot follow the server, and take a snapshot on a new connection.
   * @param {WebSocketLike} socket
   * @param {Error} reason
   */
  #startOver(socket, reason) {
    this.#startingOver = true;
    this.#drop(socket, `starting over from a snapshot: ${reason.message}`);
  }

  /** @param {any} frame */
  #receiveAnswer(frame) {
    const requestId = frame.request_id;
    if (typeof requestId === "string" && requestId === this.#queryInFlight?.requestId) {
      this.#answerQuery(frame);
      return;
    }
    const pending = typeof requestId === "string" ? this.#outbox.get(requestId) : undefined;
    if (pending) {
      pending.answer(frame);
    } else if (frame.type === "error" && frame.code === "invalid_query") {
      // The URL's query, which makeQuery let through: this server's bounds are
      // not the ones this module knows, and no list will come.
      this.#end(new CommandError(frame.code, String(frame.message)));
    } else if (frame.type === "error") {
      this.log(`usersite-client: the server says ${frame.code}: ${frame.message}`);
    }
  }

  /** @param {any} frame */
  #answerQuery(frame) {
    const inFlight = /** @type {{query: Query, requestId: string, acked: boolean}} */ (this.#queryInFlight);
    if (frame.type === "ack") {
      // Changes of the old window may still come before the new one's snapshot.
      inFlight.acked = true;
      this.#subscribed = this.#snapshotFor = inFlight.query;
      this.#queryWaits.reset();
      return;
    }
    this.#queryInFlight = null;
    if (frame.code === "rate_limited") {
      // A query writes nothing and the server refills its allowance every
      // second: wait and send the newest one wanted, however long it takes.
      this.#queryRetryTimer = setTimeout(() => {
        this.#queryRetryTimer = undefined;
        this.#sendWantedQuery();
      }, this.#queryWaits.nextDelayMs());
      return;
    }
    const error = new CommandError(String(frame.code), String(frame.message), frame.errors);
    this.#queryWaiters = this.#queryWaiters.filter((waiter) => {
      if (sameQuery(waiter.query, inFlight.query)) waiter.reject(error);
      return !sameQuery(waiter.query, inFlight.query);
    });
    // The socket stays on its query: want that one again, unless a newer one is wanted.
    if (sameQuery(this.#wanted, inFlight.query)) this.#wanted = this.#subscribed;
    this.#sendWantedQuery();
    this.#settleQueryWaiters();
  }

  /** Send the query wanted if the socket is on another and none is on its way. */
  #sendWantedQuery() {
    const socket = this.#socket;
    if (socket?.readyState !== OPEN || this.#queryInFlight || this.#queryRetryTimer !== undefined) return;
    if (sameQuery(this.#wanted, this.#subscribed)) return;
    const query = this.#wanted;
    const requestId = newRequestId();
    this.#queryInFlight = { query, requestId, acked: false };
    const { search, order, limit, offset } = query;
    socket.send(JSON.stringify({ action: "query", search, order, limit, offset, request_id: requestId }));
  }

  /** Resolve every query() waiting once the window held is the one wanted last. */
  #settleQueryWaiters() {
    if (this.#latest === null || this.#queryInFlight || !sameQuery(this.#list.query, this.#wanted)) return;
    const latest = this.#latest;
    for (const waiter of this.#queryWaiters.splice(0)) waiter.resolve(latest);
  }

  /** @param {Update} update */
  #publish(update) {
    this.#latest = update;
    for (const listener of [...this.#updateListeners]) call(listener, update);
  }

  /** @param {ConnectionState} state */
  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    for (const listener of [...this.#stateListeners]) call(listener, state);
  }

  /**
   * Stop for good: close the socket, fail what waits, and end the iterators.
   * @param {Error | null} error What ended the client, or null for close().
   */
  #end(error) {
    if (this.#state === "closed") return;
    this.#endError = error;
    this.#failure = error ?? new Error("This LiveUsers is closed.");
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#queryRetryTimer);
    const socket = this.#socket;
    this.#socket = null;
    socket?.close(1000);
    for (const pending of [...this.#outbox.values()]) pending.answer(this.#failure);
    for (const waiter of this.#queryWaiters.splice(0)) waiter.reject(this.#failure);
    this.#setState("closed");
  }
}

/**
 * Call a listener; an error it throws is reported as an uncaught one (as
 * EventTarget does) instead of breaking the client's own bookkeeping.
 * @template T
 * @param {(value: T) => void} listener
 * @param {T} value
 */
function call(listener, value) {
  try {
    listener(value);
  } catch (error) {
    setTimeout(() => {
      throw error;
    });
  }
}
