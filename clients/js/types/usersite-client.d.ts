/**
 * Return the query `options` describe, with defaults filled in; throw a
 * RangeError where the server would refuse it.
 * @param {QueryOptions} [options]
 * @returns {Query}
 */
export function makeQuery(options?: QueryOptions): Query;
/**
 * @param {Query} a
 * @param {Query} b
 */
export function sameQuery(a: Query, b: Query): boolean;
/**
 * Return the query's URL parameters, defaults left out, as the server reads them.
 * @param {Query} query
 * @returns {Record<string, string>}
 */
export function queryParameters(query: Query): Record<string, string>;
/**
 * Order ids, decimal strings of any length, as integers without converting
 * them: Number() would round ids past 2^53.
 * @param {string} a
 * @param {string} b
 */
export function compareIds(a: string, b: string): number;
/**
 * Compare by Unicode code point, as the server (Python, PostgreSQL's "C"
 * collation, SQLite) does. JavaScript's `<` compares UTF-16 units, which puts
 * characters past U+FFFF (two units from U+D800) before U+E000 to U+FFFF.
 * @param {string} a
 * @param {string} b
 */
export function compareCodePoints(a: string, b: string): number;
/**
 * A name as the `name` order compares it: ASCII letters lowercased, A to Z only
 * (not a locale's lowercasing, which differs between runtimes and from the server's).
 * @param {string} name
 */
export function sortName(name: string): string;
/**
 * Return the comparison of users in `order`: ties by id ascending, `-name` included.
 * @param {Order} order
 * @returns {(a: User, b: User) => number}
 */
export function compareUsers(order: Order): (a: User, b: User) => number;
/**
 * A random UUID4 in hex, for request ids and the client's name. Made from
 * getRandomValues, which exists where crypto.randomUUID does not (a page
 * served over plain HTTP on an address other than localhost).
 */
export function newRequestId(): string;
export const SUBPROTOCOL: "users.v2";
/** @type {readonly Order[]} */
export const ORDERS: readonly Order[];
export const MAX_LIMIT: 500;
export const MAX_OFFSET: 10000000;
export const MAX_SEARCH_LENGTH: 100;
export const MAX_FRAME_LENGTH: 65536;
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
    constructor(code: string, detail: string, errors?: Record<string, string[]>);
    code: string;
    detail: string;
    errors: Record<string, string[]>;
}
/** The server turned the socket down in a way that trying again would not change. */
export class HandshakeError extends Error {
}
/** The list cannot follow this frame; only a new snapshot can bring it back. */
export class OutOfSyncError extends Error {
}
/**
 * Delays that double from `firstMs` up to `capMs`, each shortened by a random part.
 * The random part (up to half the delay) keeps clients that lost the same server
 * at the same moment from all coming back at the same moment.
 */
export class Backoff {
    /**
     * @param {number} [firstMs]
     * @param {number} [capMs]
     * @param {() => number} [random]
     */
    constructor(firstMs?: number, capMs?: number, random?: () => number);
    failures: number;
    firstMs: number;
    capMs: number;
    random: () => number;
    /** Return the delay before the next attempt, and lengthen the one after. */
    nextDelayMs(): number;
    /** Start again from `firstMs`: the last attempt worked. */
    reset(): void;
}
/** @type {Query} */
export const WHOLE_LIST: Query;
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
    /** @type {string | null} */ epoch: string | null;
    /** @type {number | null} */ version: number | null;
    /** @type {Query} */ query: Query;
    total: number;
    /** The users held, in the query's order (a copy). */
    get users(): readonly User[];
    /**
     * Apply a `snapshot` frame of `query`'s window.
     * @param {any} frame
     * @param {Query} [query]
     * @returns {Update | null}
     */
    applySnapshot(frame: any, query?: Query): Update | null;
    /**
     * Apply a `changes` frame to the list held.
     * @param {any} frame
     * @returns {Update | null}
     */
    applyChanges(frame: any): Update | null;
    #private;
}
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
    /**
     * @param {string | URL} url The socket's URL, `ws://host/api/v1/users/ws`.
     * @param {QueryOptions & LiveUsersOptions} [options] The query to follow (default: the whole list), and how.
     */
    constructor(url: string | URL, options?: QueryOptions & LiveUsersOptions);
    rateLimitRetries: number;
    rateLimitWaitMs: number;
    rateLimitMaxWaitMs: number;
    unavailableRetries: number;
    url: URL;
    token: string | null;
    reconnect: Backoff;
    openTimeoutMs: number;
    log: (message: string) => void;
    client: string;
    /** How the connection is: before the first list, following the server, waiting to reconnect, or ended. */
    get state(): ConnectionState;
    /** The newest Update, or null before the first list. */
    get current(): Update | null;
    /**
     * Call `listener` with every Update from now on, the current list first (as a
     * snapshot) if there is one; return a function that stops it.
     * @param {(update: Update) => void} listener
     */
    onUpdate(listener: (update: Update) => void): () => void;
    /**
     * Call `listener` with the connection's state whenever it changes, the current one first.
     * @param {(state: ConnectionState) => void} listener
     */
    onState(listener: (state: ConnectionState) => void): () => void;
    /**
     * Follow another query without reconnecting; resolve with its window once
     * held (or with the window of a query asked for after it, which replaced it);
     * reject with a RangeError, sending nothing, where the server would refuse it.
     * Fields left out take their defaults: every user, by id, no window.
     * @param {QueryOptions} [options]
     * @returns {Promise<Update>}
     */
    query(options?: QueryOptions): Promise<Update>;
    /**
     * Create a user; resolve with it as the server stored it.
     * @param {{name: string, email?: string}} fields
     * @returns {Promise<User>}
     */
    create({ name, email }: {
        name: string;
        email?: string;
    }): Promise<User>;
    /**
     * Change the given fields of user `id`; resolve with the user as it is now.
     * @param {string | number} id
     * @param {{name?: string, email?: string}} fields
     * @returns {Promise<User>}
     */
    update(id: string | number, { name, email }: {
        name?: string;
        email?: string;
    }): Promise<User>;
    /**
     * Delete user `id`; resolve with its id.
     * @param {string | number} id
     * @returns {Promise<string>}
     */
    delete(id: string | number): Promise<string>;
    /** Close the connection for good: iterators end, and commands still waiting fail. */
    close(): void;
    /**
     * Yield the newest Update each time the list changes: a reader slower than the
     * changes skips to the newest, never to an older one. Ends at close(), or
     * throws what ended the client.
     * @returns {AsyncGenerator<Update, void, undefined>}
     */
    [Symbol.asyncIterator](): AsyncGenerator<Update, void, undefined>;
    #private;
}
export type User = {
    id: string;
    name: string;
    email: string;
};
export type Order = "id" | "-id" | "name" | "-name";
/**
 * Absent fields take their defaults: every user, by id, no window.
 */
export type QueryOptions = {
    search?: string;
    order?: Order;
    limit?: number | null;
    offset?: number;
};
export type Query = Readonly<{
    search: string;
    order: Order;
    limit: number | null;
    offset: number;
}>;
/**
 * The list (or window) after one frame moved it forward.
 */
export type Update = {
    epoch: string;
    version: number;
    /**
     * The query whose users these are.
     */
    query: Query;
    /**
     * The window (or the whole matching list), in the query's order.
     */
    users: readonly User[];
    /**
     * How many users match the search, the window's or not.
     */
    total: number;
    /**
     * Whether the whole list or window came at once (a connect, a new query, a new epoch).
     */
    snapshot: boolean;
    upserted: readonly User[];
    /**
     * Only ids that the list held.
     */
    deleted: readonly string[];
};
export type ConnectionState = "connecting" | "live" | "reconnecting" | "closed";
/**
 * The part of the standard WebSocket this module uses.
 */
export type WebSocketLike = {
    readyState: number;
    protocol: string;
    send: (data: string) => void;
    close: (code?: number, reason?: string) => void;
    addEventListener: (type: string, listener: (event: any) => void) => void;
};
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;
export type LiveUsersOptions = {
    /**
     * An API token, offered as the subprotocol `token.<key>`: out of URLs and logs.
     */
    token?: string | null | undefined;
    /**
     * Where there is no global WebSocket (Node 20 without
     * --experimental-websocket): the `ws` package's, say.
     */
    WebSocket?: WebSocketConstructor | undefined;
    /**
     * The delays between connections (default: 0.5 s doubling to 30 s).
     */
    reconnect?: Backoff | undefined;
    /**
     * A handshake that takes longer is given up and tried again (10 s).
     */
    openTimeoutMs?: number | undefined;
    /**
     * Where to say that a connection was lost (console.warn).
     */
    log?: ((message: string) => void) | undefined;
};
