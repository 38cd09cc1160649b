#!/usr/bin/env python
"""
Live queries' benchmark: first frames, and changes fanned out to windows, on real servers.

    .venv/bin/python bench/queries.py                  # 100,000 users, 1,000 sockets
    .venv/bin/python bench/queries.py --small          # 10,000 users, 200 sockets
    .venv/bin/python bench/queries.py --scenario first --first-connects 50
    .venv/bin/python bench/queries.py --scenario windows,whole --seconds 10

Deployments as bench/writes.py makes them (its Database and Servers): a fresh
PostgreSQL database on --postgres-url's server, channels-redis' core layer on
--redis-url (FLUSHED), --processes uvicorn processes (2) on the deployment's
command. The users are seeded with names made of random syllables
(``random_name``), so that a three-letter search matches a few hundred of
100,000 users, and with emails that no search matches (``u<i>@x.io``); the
table is analyzed after the seed, as autovacuum would have done by the time a
deployment has that many users.

Scenarios (--scenario, comma-separated; all by default):
  first    --first-connects times, one after another, on the --users list:
           connect to process i mod P with a search used by no earlier connect
           (``search=<3 letters>&order=name&limit=50``, one that matches
           between --matches users) and time from starting the connect to
           receiving the snapshot; then, that socket still open, the same URL
           again on the same process, whose window is then cached there;
           close both. p50/p99 of each kind; every snapshot is checked against
           the window worked out here (wrong_snapshots).
  windows  --sockets v2 sockets over --queries distinct queries, on the same
           list: orders id, -id, name, -name in turn, a search on all but a
           --no-search share, a limit from 20 to 50, an offset on an
           --offset-share; the sockets of each query on every process. Then
           writes for --seconds at --rate a second, at random times (a Poisson
           schedule), each through REST on the next process: creates, renames
           and deletes (4:4:2) of random users, an --aimed share of them at
           windows (a created name containing a query's search, a renamed or
           deleted user shown in a window).
  whole    the same schedule of writes on --whole-users users, followed by
           --whole-sockets v2 sockets without a query (the whole list).
  changes  on the --users list, in manage.py shell: one create, then the read
           with which a server process moves its windows on after it
           (``users.live.windows.read_changes(version - 1, searches)``), timed
           --repeat times (median) for each number of distinct searches in
           --search-counts: what a change costs a process per search its
           windows follow, whether or not the change touches them.

For windows and whole, the clients run in --client-processes processes (as
bench/writes.py's screen scenario: 1,000 sockets can saturate one Python
process) and keep their windows by the protocol's rules. Each write's version
(the answer's Users-Version) places it; the list is replayed here write by
write from the database's state before the writes, with each query's window
and total worked out independently of the server (the protocol's order and
search, in Python). From that:
  touched pairs   (write, socket) where the write changed the users the
                  socket's window shows (window_pairs), or only its total
                  (total_pairs); for whole, every write and socket;
  latency         for each touched pair, from the write's answer arriving here
                  to the first frame that socket received at the write's
                  version or later (negative when the frame came first);
                  p50/p99 over window pairs (the target's figure), and over
                  total-only pairs apart; from_sent: the same from sending the
                  write (the answer itself may wait for the server's fan-out);
  undone_pairs    touched pairs whose change a later write undid (the socket
                  showed again what it held) before it was sent a frame: the
                  server may skip them, and they have no latency;
  missing_pairs   the other touched pairs whose socket never received such a
                  frame;
  empty_frames    frames after the first that changed neither the socket's
                  window nor its total (the target: none);
  wrong_frames    frames after which the socket's window or total differs
                  from the replay's at the frame's version;
  final_mismatches  sockets whose window and total at the end differ from
                  the database's (read after the writes, worked out here);
  rest_mismatches  the same against REST's page of the socket's query
                  (GET /api/v1/users?search=&order=&limit=; without a query
                  for whole);
  server CPU      the server processes' CPU seconds from the first write
                  until the clients went quiet, per write (psutil).
The client processes' CPU share is printed too (near 100: the client is
saturated, and latencies are the client's), and the writer's (this process).
A ratio line compares windows' p50 with whole's, the issue's target.

--count runs the project as bench/counted.py and adds its counters per write.
--py-spy DIR records each server process with py-spy from the first write
until the clients went quiet (collapsed stacks, DIR/<scenario>-<process>.txt;
py-spy is not in the requirements: .venv/bin/pip install py-spy).
"""

import argparse
import asyncio
import hashlib
import multiprocessing
import random
import signal
import statistics
import string
import subprocess
import sys
import time
from bisect import bisect_left, bisect_right, insort
from collections import Counter, defaultdict
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from bench.fanout import client_cpu_seconds  # noqa: E402
from bench.v2list import Decoder  # noqa: E402
from bench.writes import (  # noqa: E402
    Database,
    Servers,
    format_pair,
    percentile,
    receive,
    run_and_describe,
)

SCENARIOS = ["first", "windows", "whole", "changes"]
ORDERS = ["id", "-id", "name", "-name"]
KINDS, KIND_WEIGHTS = ["create", "rename", "delete"], [4, 4, 2]
VERSION_HEADER = "Users-Version"  # users.api.views: the version a write committed at
SUBPROTOCOLS = ["users.v2"]
FULL = {
    "users": 100_000,
    "sockets": 1000,
    "queries": 100,
    "whole_users": 1000,
    "whole_sockets": 1000,
    "first_connects": 100,
    "seconds": 30.0,
}
SMALL = FULL | {
    "users": 10_000,
    "sockets": 200,
    "queries": 20,
    "whole_sockets": 200,
    "first_connects": 20,
    "seconds": 8.0,
}

# --- Names ---------------------------------------------------------------------

CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def random_word(rng: random.Random) -> str:
    """Two or three syllables, maybe a closing consonant: ``kalomir``."""
    syllables = rng.randint(2, 3)
    word = "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(syllables))
    return word + rng.choice(CONSONANTS) if rng.random() < 0.5 else word


def random_name(rng: random.Random, starting: str = "") -> str:
    """A first and a last name; the first starts with ``starting``."""
    return f"{(starting + random_word(rng)).capitalize()} {random_word(rng).capitalize()}"


def seed(users: int, rng_seed: int) -> None:
    """Create ``users`` users with random names, and analyze the table (in manage.py shell)."""
    from django.db import connection

    from users.models import User

    rng = random.Random(rng_seed)
    for start in range(0, users, 10_000):
        User.objects.bulk_create(
            User(name=random_name(rng), email=f"u{i}@x.io")
            for i in range(start, min(users, start + 10_000))
        )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE users_user")


SEED = "from bench.queries import seed; seed({users}, {seed})"

# Runs in manage.py shell (the changes scenario).
READ_CHANGES = """
import statistics, time
from users import services
from users.live.snapshots import current_version
from users.live.windows import read_changes
searches = {searches!r}
services.user_create(name="Changed")
epoch, version = current_version()
for count in {counts!r}:
    times = []
    for _ in range({repeat}):
        started = time.perf_counter()
        read_changes(version - 1, searches[:count])
        times.append(time.perf_counter() - started)
    print(count, 1000 * statistics.median(times))
"""


def trigrams(text: str) -> set[str]:
    """The lowercase three-letter substrings of ``text`` (letters only): possible searches."""
    text = text.lower()
    return {text[i : i + 3] for i in range(len(text) - 2) if text[i : i + 3].isalpha()}


# --- The list as the protocol defines it, worked out here -----------------------


@dataclass(frozen=True)
class Spec:
    """A live query as a socket's URL gives it (docs/protocol.md, "Live queries")."""

    search: str = ""
    order: str = "id"
    limit: int | None = None
    offset: int = 0

    def url_query(self) -> str:
        parameters = {"search": self.search, "order": self.order, "limit": self.limit}
        parameters |= {"offset": self.offset} if self.offset else {}
        return urlencode({name: value for name, value in parameters.items() if value})


WHOLE = Spec()  # the whole list: every user, by id (a socket with no query)


class Matching:
    """A query's matching users as ascending sort keys; the window read from them."""

    def __init__(self, spec: Spec, users: dict, index: dict | None = None):
        self.spec = spec
        self.search = spec.search.lower()
        self.reverse = spec.order in ("-id", "-name")
        candidates = users
        if index is not None and len(self.search) == 3:
            candidates = {uid: users[uid] for uid in index.get(self.search, ())}
        self.keys = sorted(
            self.key(uid, name)
            for uid, (name, email) in candidates.items()
            if self.matches(name, email)
        )

    def key(self, uid: int, name: str) -> tuple:
        # Names compare with ASCII letters lowercased, by code point; ties by id
        # ascending, also under -name: its keys are read backwards.
        if self.spec.order in ("id", "-id"):
            return (uid,)
        return (name.translate(ASCII_LOWER), -uid if self.spec.order == "-name" else uid)

    def matches(self, name: str, email: str) -> bool:
        return not self.search or self.search in name.lower() or self.search in email.lower()

    def update(self, uid: int, old: tuple | None, new: tuple | None) -> bool:
        """Move a user from ``old`` to ``new`` (name, email; None: absent); whether it matched."""
        changed = False
        if old is not None and self.matches(*old):
            del self.keys[bisect_left(self.keys, self.key(uid, old[0]))]
            changed = True
        if new is not None and self.matches(*new):
            insort(self.keys, self.key(uid, new[0]))
            changed = True
        return changed

    def window(self) -> list[int]:
        """The ids the window shows, in order."""
        size, start = len(self.keys), self.spec.offset
        stop = size if self.spec.limit is None else min(size, start + self.spec.limit)
        if start >= stop:
            return []
        if self.reverse:
            chosen = self.keys[size - stop : size - start][::-1]
        else:
            chosen = self.keys[start:stop]
        return [abs(key[-1]) for key in chosen]


def digest(users) -> str:
    """A short digest of (id, name, email) triples, whatever their order."""
    text = "\n".join(f"{uid}\t{name}\t{email}" for uid, name, email in sorted(users))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class Model:
    """The list and each query's matching users, moved write by write."""

    def __init__(self, users: dict, specs: list[Spec], index: dict | None = None):
        self.users = dict(users)  # id -> (name, email)
        self.queries = [Matching(spec, self.users, index) for spec in specs]

    def apply(self, uid: int, new: tuple | None) -> list[int]:
        """Write user ``uid`` (None: delete it); return the queries whose matches moved."""
        old = self.users.pop(uid, None)
        if new is not None:
            self.users[uid] = new
        return [i for i, query in enumerate(self.queries) if query.update(uid, old, new)]

    def shown(self, query: int) -> tuple[str, int]:
        """The digest of the users query ``query``'s window shows, and its total."""
        matching = self.queries[query]
        users = ((uid, *self.users[uid]) for uid in matching.window())
        return digest(users), len(matching.keys)


# --- Databases -----------------------------------------------------------------


def deploy(stack: ExitStack, args, label: str, users: int) -> tuple[Database, dict, int]:
    """A fresh database with ``users`` random users; its users (id -> name, email) and version."""
    database = Database(stack, args, "postgres", "project", label, 0)
    started = time.perf_counter()
    database.manage("shell", "-v0", "-c", SEED.format(users=users, seed=args.seed))
    database.seed_seconds = time.perf_counter() - started
    return (database, *read_list(database.env["DATABASE_URL"]))


def read_list(url: str) -> tuple[dict, int]:
    """Every user (id -> (name, email)) and the list's version, in one snapshot of the database."""
    with psycopg.connect(url) as db:
        db.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        rows = db.execute("SELECT id, name, email FROM users_user").fetchall()
        (version,) = db.execute("SELECT number FROM users_userlistversion").fetchone()
    return {uid: (name, email) for uid, name, email in rows}, version


def searches_in_range(users: dict, low: int, high: int) -> tuple[list[str], dict]:
    """Three-letter searches that match ``low`` to ``high`` users; the ids of each search."""
    index = defaultdict(list)
    for uid, (name, email) in users.items():
        for trigram in trigrams(name) | trigrams(email):
            index[trigram].append(uid)
    found = sorted(search for search, ids in index.items() if low <= len(ids) <= high)
    return found, index


# --- First frames --------------------------------------------------------------


async def first_frames(args, servers: Servers, users: dict, searches: list, index: dict) -> dict:
    """Connect with a new search, then with the same again; time each to its snapshot."""
    rng = random.Random(args.seed)
    chosen = rng.sample(searches, min(len(searches), args.first_connects + len(servers.ws_urls)))
    warm_up, chosen = chosen[: len(servers.ws_urls)], chosen[len(servers.ws_urls) :]
    for url, search in zip(servers.ws_urls, warm_up, strict=True):
        await first_frame(f"{url}?{Spec(search, 'name', 50).url_query()}")
    times = {"new": [], "cached": []}
    wrong, matches = 0, []
    for i, search in enumerate(chosen):
        spec = Spec(search, "name", 50)
        url = f"{servers.ws_urls[i % len(servers.ws_urls)]}?{spec.url_query()}"
        expected = Model(users, [spec], index).shown(0)
        matches.append(expected[1])
        first, seconds, frame = await first_frame(url, keep=True)
        times["new"].append(seconds)
        again, seconds, frame_again = await first_frame(url, keep=True)
        times["cached"].append(seconds)
        for message in (frame, frame_again):
            shown = Held()
            wrong += shown.apply(message) is None or (shown.digest(), shown.total) != expected
        await asyncio.gather(first.close(), again.close())
    result = {"scenario": "first", "users": len(users), "connects": len(chosen)}
    for kind, values in times.items():
        result[f"{kind}_p50_ms"] = 1000 * statistics.median(values)
        result[f"{kind}_p99_ms"] = 1000 * percentile(values, 0.99)
        result[f"{kind}_max_ms"] = 1000 * max(values)
    result |= {"matches_median": statistics.median(matches), "wrong_snapshots": wrong}
    print(" ".join(format_pair(k, v) for k, v in result.items()), flush=True)
    return result


async def first_frame(url: str, keep: bool = False) -> tuple:
    """Connect to ``url``: the socket (closed unless ``keep``), seconds to the first frame, it."""
    started = time.perf_counter()
    ws = await connect(url, subprotocols=SUBPROTOCOLS, max_size=None, open_timeout=60)
    text = await asyncio.wait_for(ws.recv(), 60)
    seconds = time.perf_counter() - started
    if not keep:
        await ws.close()
    return ws, seconds, Decoder()(text)


# --- The read behind every change ---------------------------------------------------


def read_changes_cost(args, database: Database, searches: list[str]) -> dict:
    """Time users.live.windows.read_changes after one create, for each number of searches."""
    counts = [count for count in args.search_counts if count <= len(searches)]
    rng = random.Random(args.seed + 3)
    chosen = rng.sample(searches, max(counts))
    printed = database.manage(
        "shell", "-v0", "-c",
        READ_CHANGES.format(searches=chosen, counts=counts, repeat=args.repeat),
    )  # fmt: skip
    result = {"scenario": "changes", "users": args.users, "repeat": args.repeat}
    for line in printed.split("\n"):
        if line.strip():
            count, milliseconds = line.split()
            result[f"read_changes_ms_{count}_searches"] = float(milliseconds)
    print(" ".join(format_pair(k, v) for k, v in result.items()), flush=True)
    return result


# --- Clients ---------------------------------------------------------------------


class Held:
    """What one socket holds, by the protocol's rules: users by id, epoch, version, total."""

    __slots__ = ("epoch", "total", "users", "version")

    def __init__(self):
        self.users: dict[str, tuple] = {}
        self.epoch = self.version = self.total = None

    def apply(self, message: dict) -> tuple[bool, bool] | None:
        """
        Apply a snapshot or changes frame; return whether the users shown and
        the total changed, or None (not applied) for changes that do not start
        at the version held.
        """
        if message["type"] == "snapshot":
            users = {uid: (user["name"], user["email"]) for uid, user in message["users"].items()}
            changed = users != self.users
            self.users = users
        elif (message["epoch"], message["from"]) != (self.epoch, self.version):
            return None
        else:
            changed = False
            for user in message["upserted"]:
                shown = (user["name"], user["email"])
                changed |= self.users.get(user["id"]) != shown
                self.users[user["id"]] = shown
            for uid in message["deleted"]:
                changed |= self.users.pop(uid, None) is not None
        total = message.get("total")
        total_changed = total != self.total
        self.epoch, self.version, self.total = message["epoch"], message["version"], total
        return changed, total_changed

    def digest(self) -> str:
        return digest((int(uid), name, email) for uid, (name, email) in self.users.items())


def window_clients(sockets: list, digests: bool, pipe) -> None:
    """A client process of the windows and whole scenarios (multiprocessing's target)."""
    asyncio.run(WindowClients(sockets, digests).run(pipe))


class WindowClients:
    """
    Sockets in one process, each holding its window (or the whole list) and
    noting every frame: when, its version, whether it changed what the socket
    shows, and (with ``digests``) a digest of what it shows after it.
    """

    def __init__(self, sockets: list[tuple[int, str]], digests: bool):
        self.sockets, self.digests = sockets, digests
        self.decode = Decoder()  # each distinct frame decoded once
        self.held = {index: Held() for index, _ in sockets}
        self.frames = {index: [] for index, _ in sockets}
        self.broken = self.closed = self.other = 0
        self.last_frame = time.monotonic()

    async def run(self, pipe) -> None:
        opened, readers = [], []
        # 20 at a time, each batch once it holds its snapshots, as bench/writes.py connects.
        for start in range(0, len(self.sockets), 20):
            batch = self.sockets[start : start + 20]
            connecting = (
                connect(url, subprotocols=SUBPROTOCOLS, max_size=None, open_timeout=120)
                for _, url in batch
            )
            for (index, _), ws in zip(batch, await asyncio.gather(*connecting), strict=True):
                opened.append(ws)
                readers.append(asyncio.create_task(self.read(index, ws)))
            async with asyncio.timeout(120):
                while any(self.held[index].version is None for index, _ in batch):
                    await asyncio.sleep(0.01)
        pipe.send(len(opened))
        await asyncio.to_thread(pipe.recv)  # start
        cpu, started = client_cpu_seconds(), time.monotonic()
        quiet, timeout = await asyncio.to_thread(pipe.recv)
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.last_frame < quiet and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        wall, cpu = time.monotonic() - started, client_cpu_seconds() - cpu
        pipe.send(self.report(cpu, wall))
        await asyncio.gather(*(ws.close() for ws in opened))
        for reader in readers:
            reader.cancel()

    async def read(self, index: int, ws) -> None:
        held, frames = self.held[index], self.frames[index]
        try:
            async for text in ws:
                now = time.monotonic()
                message = self.decode(text)
                if message.get("type") not in ("snapshot", "changes"):
                    self.other += 1  # an error frame: none is expected
                    continue
                changed = held.apply(message)
                if changed is None:
                    self.broken += 1
                    continue
                self.last_frame = now
                shown = held.digest() if self.digests else None
                frames.append((now, held.version, *changed, shown, held.total))
        except ConnectionClosed:
            pass
        self.closed += 1

    def report(self, cpu: float, wall: float) -> dict:
        final = {
            index: (held.digest(), held.total, held.version) for index, held in self.held.items()
        }
        return {
            "frames": self.frames,
            "final": final,
            "cpu_s": cpu,
            "wall_s": wall,
            "broken": self.broken,
            "closed": self.closed,
            "other": self.other,
        }


# --- Writes ------------------------------------------------------------------------


@dataclass
class Write:
    """A write as it committed: its version, the user, what it holds after (None: deleted)."""

    version: int
    kind: str
    uid: int
    new: tuple | None
    sent: float
    answered: float


class Writer:
    """
    Writes through REST at random times, each on the next server process.

    Targets are chosen when a write is due, from the list as the answers so far
    left it (``live``); a user being renamed or deleted is not chosen again
    until answered.
    """

    def __init__(self, args, urls: list[str], live: Model, aimed: float):
        self.args, self.urls, self.live, self.aimed = args, urls, live, aimed
        self.rng = random.Random(args.seed + 1)
        self.busy: set[int] = set()
        self.gone: set[int] = set()
        self.ids = list(live.users)
        self.writes: list[Write] = []
        self.failures: list[str] = []
        self.created = 0

    def schedule(self) -> list[float]:
        """When each write is due, from the start: a Poisson schedule of --rate a second."""
        rng, at, times = random.Random(self.args.seed), 0.0, []
        while True:
            at += rng.expovariate(self.args.rate)
            if at >= self.args.seconds:
                return times
            times.append(at)

    async def run(self) -> float:
        """Make every write, each at its time; return how long the writes took."""
        started = time.monotonic() + 0.1
        limits = httpx.Limits(max_connections=None)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            await asyncio.gather(
                *(self.write(http, k, started + at) for k, at in enumerate(self.schedule()))
            )
        return time.monotonic() - started

    async def write(self, http: httpx.AsyncClient, k: int, due: float) -> None:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        kind, uid, name = self.choose()
        url = f"{self.urls[k % len(self.urls)]}/api/v1/users"
        sent = time.monotonic()
        try:
            if kind == "create":
                self.created += 1
                email = f"w{self.created}.{self.args.seed}@x.io"
                response = await http.post(url, json={"name": name, "email": email})
            elif kind == "rename":
                response = await http.patch(f"{url}/{uid}", json={"name": name})
            else:
                response = await http.delete(f"{url}/{uid}")
        except httpx.HTTPError as exc:
            self.failures.append(f"{kind} {exc!r}")
            return
        finally:
            self.busy.discard(uid)
        answered = time.monotonic()
        if response.status_code not in (200, 201, 204):
            self.failures.append(f"{kind} {response.status_code} {response.text[:100]}")
            return
        new = None
        if kind != "delete":
            user = response.json()
            uid, new = int(user["id"]), (user["name"], user["email"])
            if kind == "create":
                self.ids.append(uid)
        version = int(response.headers[VERSION_HEADER])
        self.writes.append(Write(version, kind, uid, new, sent, answered))
        self.live.apply(uid, new)

    def choose(self) -> tuple[str, int | None, str]:
        """The next write's kind, user (None for a create) and new name."""
        rng = self.rng
        kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
        aimed = rng.random() < self.aimed
        searched = [query for query in self.live.queries if query.search]
        if kind == "create":
            starting = rng.choice(searched).search if aimed and searched else ""
            return kind, None, random_name(rng, starting)
        uid = self.aimed_user() if aimed else None
        while uid is None or uid in self.busy or uid in self.gone:
            uid = rng.choice(self.ids)
        self.busy.add(uid)
        if kind == "delete":
            self.gone.add(uid)
        return kind, uid, random_name(rng)

    def aimed_user(self) -> int | None:
        """A user that a random query's window shows now, if it shows any."""
        shown = self.rng.choice(self.live.queries).window()
        return self.rng.choice(shown) if shown else None


# --- Fan-out -------------------------------------------------------------------------


def window_specs(args, searches: list[str]) -> list[Spec]:
    """--queries distinct queries: orders in turn, most with a search, limits 20 to 50."""
    rng = random.Random(args.seed + 2)
    chosen = iter(rng.sample(searches, min(len(searches), args.queries)))
    specs = []
    for q in range(args.queries):
        search = "" if rng.random() < args.no_search_share else next(chosen, "")
        offset = rng.randint(1, 100) if rng.random() < args.offset_share else 0
        specs.append(Spec(search, ORDERS[q % len(ORDERS)], rng.randint(20, 50), offset))
    return list(dict.fromkeys(specs))  # distinct: a repeated one would share its sockets


async def fan_out(args, scenario: str, servers: Servers, database_url: str, users: dict,
                  version: int, specs: list[Spec], sockets: int, aimed: float,
                  index: dict | None = None) -> dict:  # fmt: skip
    """``sockets`` sockets over ``specs`` on every server, writes meanwhile; the analysis."""
    whole = specs == [WHOLE]
    processes = len(servers.ws_urls)
    # Socket i follows query i mod Q on process (i // Q) mod P: each query on every process.
    follows = [i % len(specs) for i in range(sockets)]
    urls = [
        servers.ws_urls[(i // len(specs)) % processes]
        + ("" if whole else f"?{specs[follows[i]].url_query()}")
        for i in range(sockets)
    ]
    context = multiprocessing.get_context("spawn")
    pipes, children = [], []
    try:
        for c in range(args.client_processes):
            ours, theirs = context.Pipe()
            mine = [(i, urls[i]) for i in range(c, sockets, args.client_processes)]
            child = context.Process(
                target=window_clients, args=(mine, not whole, theirs), daemon=True
            )
            child.start()
            pipes.append(ours)
            children.append(child)
        connected = sum([await asyncio.to_thread(receive, pipe, 600) for pipe in pipes])
        writer = Writer(args, servers.urls, Model(users, specs, index), aimed)
        counts = await servers.counts()
        cpu, writer_cpu = servers.cpu_seconds(), client_cpu_seconds()
        with profiled(args, servers, scenario):
            for pipe in pipes:
                pipe.send("start")
            started = time.monotonic()
            writing = await writer.run()
            for pipe in pipes:
                pipe.send((args.quiet, args.settle_timeout))
            reports = [await asyncio.to_thread(receive, pipe, args.settle_timeout + 60)
                       for pipe in pipes]  # fmt: skip
            elapsed = time.monotonic() - started
            cpu, writer_cpu = servers.cpu_seconds() - cpu, client_cpu_seconds() - writer_cpu
        counts = await servers.counts() - counts
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.terminate()
    final_users, final_version = read_list(database_url)
    pages = await rest_pages(servers.urls[0], specs)
    result = {
        "scenario": scenario,
        "users": len(users),
        "sockets": connected,
        "queries": len(specs),
        "server_processes": processes,
        "writes": len(writer.writes),
        **Counter(write.kind + "s" for write in writer.writes),
        "write_failures": len(writer.failures),
        **({"first_failure": writer.failures[0]} if writer.failures else {}),
        "writes_within_s": writing,
        "rest_p50_ms": 1000 * statistics.median(w.answered - w.sent for w in writer.writes),
    }
    result |= analyse(
        users, version, specs, index, writer.writes, follows, reports, final_users, final_version,
        pages,
    )  # fmt: skip
    writes = len(writer.writes)
    result |= {
        "server_cpu_s": cpu,
        "server_cpu_ms_per_write": 1000 * cpu / writes if writes else float("nan"),
        "client_cpu_pct": [round(100 * r["cpu_s"] / r["wall_s"]) for r in reports],
        "writer_cpu_pct": round(100 * writer_cpu / elapsed),
        "broken_changes": sum(r["broken"] for r in reports),
        "error_frames": sum(r["other"] for r in reports),
        "closed_sockets": sum(r["closed"] for r in reports),
        **{f"{name}_per_write": n / writes for name, n in sorted(counts.items()) if writes},
    }
    print(" ".join(format_pair(k, v) for k, v in result.items()), flush=True)
    return result


async def rest_pages(url: str, specs: list[Spec]) -> list[tuple[str, int | None]]:
    """What REST answers for each query: the digest of its window's users, and its total."""
    pages = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for spec in specs:
            if spec == WHOLE:
                parameters = {}
            else:  # REST pages have no offset: the page up to the window's end
                parameters = {"order": spec.order, "limit": spec.offset + spec.limit}
                parameters |= {"search": spec.search} if spec.search else {}
            response = await http.get("/api/v1/users", params=parameters)
            response.raise_for_status()
            page = response.json()
            users = page["users"][spec.offset :]
            shown = digest((int(user["id"]), user["name"], user["email"]) for user in users)
            pages.append((shown, page.get("total")))
    return pages


@contextmanager
def profiled(args, servers: Servers, scenario: str):
    """With --py-spy, record each server process meanwhile (py-spy's raw, collapsed stacks)."""
    if args.py_spy is None:
        yield
        return
    args.py_spy.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    recorders = [
        subprocess.Popen(
            [spy, "record", "--pid", str(process.pid), "--format", "raw", "--nonblocking",
             "--output", args.py_spy / f"{scenario}-{i}.txt"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for i, process in enumerate(servers.processes)
    ]  # fmt: skip
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)  # py-spy writes its output and ends
        for recorder in recorders:
            recorder.wait(timeout=60)


def analyse(users: dict, version: int, specs: list[Spec], index: dict | None, writes: list,
            follows: list[int], reports: list[dict], final_users: dict,
            final_version: int, pages: list[tuple]) -> dict:  # fmt: skip
    """Replay the writes in version order; match each socket's frames against the replay."""
    writes = sorted(writes, key=lambda write: write.version)
    versions = [write.version for write in writes]
    expected_versions = list(range(version + 1, version + 1 + len(writes)))
    replay = Model(users, specs, index)
    # Per query: the versions where what it shows changed, and what it shows from each.
    timeline = [([version], [replay.shown(q)]) for q in range(len(specs))]
    touched = []  # (write, query, "window" or "total")
    for write in writes:
        for q in replay.apply(write.uid, write.new):
            shown = replay.shown(q)
            before = timeline[q][1][-1]
            if shown == before:
                continue
            timeline[q][0].append(write.version)
            timeline[q][1].append(shown)
            touched.append((write, q, "window" if shown[0] != before[0] else "total"))
    truth = Model(final_users, specs)  # a full scan: the index is of the first list
    by_query = defaultdict(list)
    for socket, q in enumerate(follows):
        by_query[q].append(socket)
    frames = {i: f for report in reports for i, f in report["frames"].items()}
    final = {i: f for report in reports for i, f in report["final"].items()}
    whole = specs == [WHOLE]
    seen = {socket: received[1:] for socket, received in frames.items()}  # after the snapshot
    held_versions = {socket: [frame[1] for frame in f] for socket, f in frames.items()}
    latencies, missing, undone = {"window": [], "total": [], "sent": []}, 0, 0
    for write, q, kind in touched:
        for socket in by_query[q]:
            held = held_versions[socket]
            at = bisect_left(held, write.version)  # the frame that brings it, if any
            if undone_before_sent(timeline[q], write.version, *held[at - 1 : at + 1]):
                undone += 1
            elif at == len(held):
                missing += 1
            else:
                latencies[kind].append(frames[socket][at][0] - write.answered)
                if kind == "window":
                    latencies["sent"].append(frames[socket][at][0] - write.sent)
    empty = wrong = received = 0
    for socket, q in enumerate(follows):
        changes, shown = timeline[q]
        for frame in seen[socket]:
            received += 1
            empty += not (frame[2] or frame[3])
            if not whole:
                expected = shown[bisect_right(changes, frame[1]) - 1]
                wrong += (frame[4], frame[5]) != expected
    truths = [truth.shown(q) for q in range(len(specs))]
    held = [(shown, None) for shown, _ in truths] if whole else truths  # the whole list: no total
    mismatches = sum(final[socket][:2] != held[q] for socket, q in enumerate(follows))
    rest_mismatches = sum(final[socket][:2] != pages[q] for socket, q in enumerate(follows))
    window, sent = latencies["window"], latencies["sent"]
    return {
        "version_gaps": len(set(expected_versions) - set(versions)),
        "final_version_matches": versions[-1] == final_version if versions else None,
        "replay_differs_from_database": sum(
            replay.shown(q) != truths[q] for q in range(len(specs))
        ),
        "writes_touching_a_window": len(
            {write.version for write, _, k in touched if k == "window"}
        ),
        "writes_touching_nothing": len(writes) - len({write.version for write, _, _ in touched}),
        "window_pairs": len(window),
        "total_pairs": len(latencies["total"]),
        "undone_pairs": undone,
        "missing_pairs": missing,
        "p50_ms": 1000 * statistics.median(window) if window else float("nan"),
        "p99_ms": 1000 * percentile(window, 0.99) if window else float("nan"),
        "max_ms": 1000 * max(window) if window else float("nan"),
        "from_sent_p50_ms": 1000 * statistics.median(sent) if sent else float("nan"),
        "from_sent_p99_ms": 1000 * percentile(sent, 0.99) if sent else float("nan"),
        "total_only_p50_ms": (
            1000 * statistics.median(latencies["total"]) if latencies["total"] else float("nan")
        ),
        "frame_before_answer": sum(latency < 0 for latency in window),
        "frames": received,
        "empty_frames": empty,
        **({} if whole else {"wrong_frames": wrong}),
        "final_mismatches": mismatches,
        "rest_mismatches": rest_mismatches,
    }


def undone_before_sent(timeline: tuple, version: int, held: int, brought: int | None = None):
    """
    Whether a change at ``version`` to what a socket shows was undone before
    the socket was sent a frame: what it held (at version ``held``) is shown
    again at some version from ``version`` to before the frame that ``brought``
    it on (or to the end, if none did). The server may skip such a change.
    """
    changes, shown = timeline
    before = shown[bisect_right(changes, held) - 1]
    end = len(changes) if brought is None else bisect_left(changes, brought)
    return any(shown[k] == before for k in range(bisect_left(changes, version), end))


# --- The run ---------------------------------------------------------------------------


async def run(args) -> list[dict]:
    results = []
    selected = set(args.scenario)
    if selected & {"first", "windows", "changes"}:
        with ExitStack() as stack:
            database, users, version = deploy(stack, args, "queries", args.users)
            searches, index = searches_in_range(users, *args.matches)
            print(
                f"seeded {len(users)} users in {database.seed_seconds:.1f} s; "
                f"{len(searches)} searches match {args.matches[0]}-{args.matches[1]} users",
                flush=True,
            )
            if selected & {"first", "windows"}:
                servers = start_servers(stack, args, database)
            if "first" in selected:
                results.append(await first_frames(args, servers, users, searches, index))
            if "windows" in selected:
                specs = window_specs(args, searches)
                describe(specs, users, index)
                results.append(await fan_out(
                    args, "windows", servers, database.env["DATABASE_URL"], users, version,
                    specs, args.sockets, args.aimed, index,
                ))  # fmt: skip
            if "changes" in selected:
                results.append(read_changes_cost(args, database, searches))
    if "whole" in selected:
        with ExitStack() as stack:
            database, users, version = deploy(stack, args, "whole", args.whole_users)
            servers = start_servers(stack, args, database)
            results.append(await fan_out(
                args, "whole", servers, database.env["DATABASE_URL"], users, version, [WHOLE],
                args.whole_sockets, 0,
            ))  # fmt: skip
    return results


def start_servers(stack: ExitStack, args, database: Database) -> Servers:
    servers = stack.enter_context(Servers(database, args.processes))
    print(f"servers: pids {' '.join(str(p.pid) for p in servers.processes)}", flush=True)
    return servers


def describe(specs: list[Spec], users: dict, index: dict) -> None:
    """Print the queries the windows scenario follows."""
    model = Model(users, specs, index)
    totals = [len(query.keys) for query in model.queries if query.search]
    print(
        f"queries: {len(specs)}; orders {dict(Counter(spec.order for spec in specs))}; "
        f"{sum(not spec.search for spec in specs)} without a search; "
        f"{sum(bool(spec.offset) for spec in specs)} with an offset; "
        f"limits {min(spec.limit for spec in specs)}-{max(spec.limit for spec in specs)}; "
        f"the searches match {min(totals)}-{max(totals)} users, median {statistics.median(totals)}",
        flush=True,
    )


def summary(args, results: list[dict]) -> list[str]:
    """The issue's targets, from what this run measured."""
    found = {result["scenario"]: result for result in results}
    sizes = ("users", "sockets", "queries", "whole_users", "whole_sockets")
    aside = "" if all(getattr(args, k) == FULL[k] for k in sizes) else ", not at its sizes"
    lines = []
    if first := found.get("first"):
        met = "met" if first["new_p50_ms"] <= 50 else "not met"
        lines.append(
            f"first frame, new search: p50 {first['new_p50_ms']:.2f} ms, "
            f"p99 {first['new_p99_ms']:.2f} ms; cached: p50 {first['cached_p50_ms']:.2f} ms, "
            f"p99 {first['cached_p99_ms']:.2f} ms (target: p50 at most 50 ms: {met}{aside})"
        )
    windows, whole = found.get("windows"), found.get("whole")
    if windows and whole:
        ratio = windows["p50_ms"] / whole["p50_ms"]
        lines.append(
            f"write-to-screen p50, windows / whole list: {ratio:.2f}x "
            f"({windows['p50_ms']:.2f} / {whole['p50_ms']:.2f} ms; target at most 2x: "
            f"{'met' if ratio <= 2 else 'not met'}{aside})"
        )
        lines.append(
            f"the same from each write's request instead of its answer: "
            f"{windows['from_sent_p50_ms'] / whole['from_sent_p50_ms']:.2f}x "
            f"({windows['from_sent_p50_ms']:.2f} / {whole['from_sent_p50_ms']:.2f} ms)"
        )
    for result in (windows, whole):
        if result:
            lines.append(
                f"{result['scenario']}: {result['empty_frames']} frames that changed nothing "
                f"(target 0), {result['final_mismatches']} final windows unlike the database's "
                f"and {result['rest_mismatches']} unlike REST's pages, "
                f"{result['missing_pairs']} touched pairs never delivered; server CPU "
                f"{result['server_cpu_ms_per_write']:.2f} ms per write"
            )
    if changes := found.get("changes"):
        costs = [
            (key.split("_")[3], value) for key, value in changes.items() if key.endswith("searches")
        ]
        lines.append(
            "read_changes after one create: "
            + ", ".join(f"{value:.2f} ms for {count} searches" for count, value in costs)
        )
    return lines


def pair(text: str) -> tuple[int, int]:
    low, high = (int(part) for part in text.split(","))
    return low, high


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--scenario", default=",".join(SCENARIOS), help=f"comma-separated, of {','.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--small",
        action="store_true",
        help="a quick run: sizes default to "
        + ", ".join(f"{k}={v:g}" for k, v in SMALL.items() if FULL[k] != v),
    )
    for name, value in FULL.items():
        kind = float if isinstance(value, float) else int
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=kind, help=f"({value:g}; --small: {SMALL[name]:g})"
        )
    parser.add_argument("--processes", type=int, default=2, help="server processes (2)")
    parser.add_argument("--client-processes", type=int, default=2, help="(2)")
    parser.add_argument("--rate", type=float, default=20.0, help="writes a second (20)")
    parser.add_argument(
        "--aimed", type=float, default=0.3, help="windows: share of writes aimed at windows (0.3)"
    )
    parser.add_argument(
        "--matches",
        type=pair,
        help="LOW,HIGH: users a search matches (users/500,users/125: 200,800 at 100,000)",
    )
    parser.add_argument("--no-search-share", type=float, default=0.1, help="(0.1)")
    parser.add_argument("--offset-share", type=float, default=0.1, help="(0.1)")
    parser.add_argument(
        "--quiet", type=float, default=2.0, help="the clients' last frame this long ago: done (2)"
    )
    parser.add_argument("--settle-timeout", type=float, default=60.0, help="(60)")
    parser.add_argument(
        "--search-counts",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 10, 50, 100],
        help="changes: numbers of distinct searches (1,10,50,100)",
    )
    parser.add_argument("--repeat", type=int, default=30, help="changes: reads timed (30)")
    parser.add_argument("--seed", type=int, default=16, help="of every random choice (16)")
    parser.add_argument("--count", action="store_true", help="run bench/counted.py")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="windows, whole: record the servers with py-spy (.venv/bin/py-spy, not in "
        "requirements) from the first write until the clients went quiet, into "
        "DIR/<scenario>-<process>.txt (collapsed stacks)",
    )
    parser.add_argument(
        "--postgres-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="a server where the benchmark creates and drops its databases",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/9",
        help="FLUSHED by every deployment (redis://127.0.0.1:6379/9)",
    )
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args()
    args.scenario = args.scenario.split(",")
    if unknown := set(args.scenario) - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    for name, value in (SMALL if args.small else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.matches = args.matches or (args.users // 500, args.users // 125)
    results = run_and_describe(parser, args, run)
    for line in summary(args, results):
        print(line)


if __name__ == "__main__":
    main()
