"""
Writes to one user at once, from every path, against real server processes.

On PostgreSQL with Redis the servers are two uvicorn processes; on SQLite
with the in-memory layer, which cannot reach another process, one. Requests
run at once within a process too: Django's ASGI handler gives each request a
thread of its own (ThreadSensitiveContext), so a request can read a user
before another's write commits on either backend.
Each test gathers every problem it sees (answers, lists held by clients,
frames, server log lines) and fails with all of them, not only the first.

What must hold: never a 5xx; an update of a user deleted meanwhile answers 404
(REST) or ``not_found`` (v2); a DELETE that answered 204 is final; an update
changes only the fields it names; a write that changes nothing sends no frame;
every v1 and v2 client ends holding the database's list; no change set names
one id both upserted and deleted; no traceback and no ERROR line in the logs.
"""

import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from types import SimpleNamespace

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from servers import ROOT
from tests.e2e.clients import (
    ADMIN_CHANGE_PATH,
    CSRF_FIELD,
    ChangesWatcher,
    ListWatcher,
    admin_session,
    brief,
    database_list,
    log_problems,
    raised_in,
    unique_name,
)

pytestmark = pytest.mark.backends

CONVERGE_SECONDS = 10  # for every client to hold the database's list once writes end


def on(items: list, k: int):
    """The k-th of ``items`` in turn: writes alternate between the processes."""
    return items[k % len(items)]


# -- what a test checks at its end ---------------------------------------------------


def difference(held: list, expected: list) -> str:
    """How the list a client holds differs from the database's."""
    have, want = {user["id"]: user for user in held}, {user["id"]: user for user in expected}
    missing = [want[key] for key in sorted(want.keys() - have.keys(), key=int)]
    extra = [have[key] for key in sorted(have.keys() - want.keys(), key=int)]
    changed = [
        (have[key], want[key]) for key in have.keys() & want.keys() if have[key] != want[key]
    ]
    return (
        f"it lacks {len(missing)} users {missing[:5]}, holds {len(extra)} the database has not "
        f"{extra[:5]}, and {len(changed)} differently (held, database) {changed[:5]}"
    )


def newest_list(watcher: ListWatcher) -> list | None:
    """The newest list frame a v1 client got (error frames are objects, not lists)."""
    lists = [frame for frame in watcher.lists if isinstance(frame, list)]
    return lists[-1] if lists else None


async def v1_problem(label: str, watcher: ListWatcher, expected: list) -> str | None:
    """Wait until a v1 client's newest list is ``expected``; say how it differs otherwise."""
    try:
        async with asyncio.timeout(CONVERGE_SECONDS):
            while newest_list(watcher) != expected:
                if watcher.task.done():
                    return (
                        f"{label}: the socket closed ({watcher.ws.close_code}) holding a list "
                        + (difference(newest_list(watcher) or [], expected))
                    )
                watcher.changed.clear()
                await watcher.changed.wait()
    except TimeoutError:
        held = newest_list(watcher) or []
        return (
            f"{label} did not end on the database's list within {CONVERGE_SECONDS} s: "
            f"{difference(held, expected)}"
        )
    return None


async def v2_problem(label: str, watcher: ChangesWatcher, expected: list) -> str | None:
    try:
        await watcher.wait_for(expected, CONVERGE_SECONDS)
    except AssertionError as failure:
        return f"{label} did not end on the database's list: {failure}"
    return None


async def clients_problems(v1: dict, v2: dict, expected: list) -> list[str]:
    """Every client (label: watcher) must come to hold ``expected``; waited for at once."""
    found = await asyncio.gather(
        *(v1_problem(label, watcher, expected) for label, watcher in v1.items()),
        *(v2_problem(label, watcher, expected) for label, watcher in v2.items()),
    )
    return [problem for problem in found if problem]


def twice_named(v2: dict) -> list[str]:
    """A problem per v2 client sent a change set naming one id both upserted and deleted."""
    problems = []
    for label, watcher in v2.items():
        both = [
            (frame, sorted({user["id"] for user in frame["upserted"]} & set(frame["deleted"])))
            for frame in watcher.frames
            if frame.get("type") == "changes"
        ]
        both = [(frame, ids) for frame, ids in both if ids]
        if both:
            problems.append(
                f"{label} got {len(both)} change sets naming an id both upserted and deleted, "
                f"ids {[ids for _, ids in both][:10]}; the first: {brief(both[0][0])}"
            )
    return problems


async def v1_watchers(servers) -> dict:
    return {
        f"v1 client on :{server.port}": ListWatcher(await connect(server.ws_url, max_size=None))
        for server in servers
    }


async def v2_watchers(servers, role: str = "client") -> dict:
    return {f"v2 {role} on :{server.port}": await ChangesWatcher.open(server) for server in servers}


async def close_all(*clients: dict) -> None:
    """Close every socket; a watcher's own failure was already reported as a problem."""
    for watchers in clients:
        for watcher in watchers.values():
            await watcher.ws.close()
            await asyncio.gather(watcher.task, return_exceptions=True)


def gist(response: httpx.Response) -> str:
    """A response's body for a failure message: a server error page's title, or the start."""
    text = response.text
    if "<title>" in text:
        return " ".join(text.split("<title>", 1)[1].split("</title>", 1)[0].split())
    return text[:200]


def body(response: httpx.Response):
    """A response's JSON, or its text when it is none (a server error's page)."""
    try:
        return response.json()
    except ValueError:
        return response.text[:200]


def report(problems: list[str], heading: str = "", most: int = 12) -> str:
    """Problems for a failure message, one a line: the first ``most`` of them."""
    shown = problems[:most] + (
        [f"... and {len(problems) - most} more"] if len(problems) > most else []
    )
    return "\n".join([heading, *shown] if heading else shown)


# -- 1. four PATCHes and a DELETE of one user at once -----------------------------------

ROUNDS = 100
ROUNDS_AT_ONCE = 10
PATCHES = 4
ROUND_ANSWERS = {"POST": {201}, "PATCH": {200, 404}, "DELETE": {204, 404}}
# Past this, a test that already failed starts no more rounds: deadlocks cost a second each.
FAILING_ROUNDS_SECONDS = 20


async def test_four_patches_and_a_delete_of_one_user_at_once_never_fail_and_the_delete_is_final(
    servers, rest, log_marks
):
    v1, v2 = await v1_watchers(servers[:1]), await v2_watchers(servers[-1:])
    problems = await clients_problems(v1, v2, await database_list(servers[0]))
    assert not problems, report(problems)
    answers, deleted = [], {}  # deleted: user id -> the round whose DELETE answered 204
    at_once, started = asyncio.Semaphore(ROUNDS_AT_ONCE), time.monotonic()

    def failing() -> bool:
        return any(status not in ROUND_ANSWERS[method] for _, _, method, _, status, _ in answers)

    async def one_round(k: int) -> None:
        async with at_once:
            if failing() and time.monotonic() - started > FAILING_ROUNDS_SECONDS:
                return
            name, where = unique_name(f"r{k}"), f":{on(servers, k).port}"
            created = await on(rest, k).post("/api/v1/users", json={"name": name})
            answers.append((k, None, "POST", where, created.status_code, gist(created)))
            if created.status_code != 201:
                return
            user_id = created.json()["id"]
            path = f"/api/v1/users/{user_id}"
            writes = [
                (k + j, "PATCH", {"name": unique_name(f"r{k} patch {j}")}) for j in range(PATCHES)
            ] + [(k + 1, "DELETE", None)]
            writes = random.Random(k).sample(writes, len(writes))  # the DELETE goes out anywhere
            responses = await asyncio.gather(
                *(on(rest, at).request(method, path, json=sent) for at, method, sent in writes)
            )
            for (at, method, sent), response in zip(writes, responses, strict=True):
                status, where = response.status_code, f":{on(servers, at).port}"
                answers.append((k, user_id, method, where, status, gist(response)))
                if method == "PATCH" and status == 200 and response.json()["name"] != sent["name"]:
                    problems.append(
                        f"round {k}, user {user_id}: PATCH {sent} on {where} answered 200 "
                        f"with {response.json()}"
                    )
                if method == "DELETE" and status == 204:
                    deleted[user_id] = k

    await asyncio.gather(*(one_round(k) for k in range(ROUNDS)))
    rounds = len({k for k, *_ in answers})
    statuses = Counter(f"{method} {status}" for _, _, method, _, status, _ in answers)
    print(
        f"{rounds} rounds on {len(servers)} processes in {time.monotonic() - started:.1f} s: "
        f"{dict(sorted(statuses.items()))}"
    )
    refused = [answer for answer in answers if answer[4] not in ROUND_ANSWERS[answer[2]]]
    if refused:
        problems.append(
            f"{len(refused)} of {len(answers)} answers were none of {ROUND_ANSWERS}: "
            f"{dict(Counter(f'{method} {status}' for _, _, method, _, status, _ in refused))}; "
            + "; ".join(
                f"round {k}, user {user_id}: {method} on {where} answered {status} {text}"
                for k, user_id, method, where, status, text in refused[:3]
            )
        )

    # A DELETE that answered 204 is final: the user is gone for good.
    probes = {user_id: on(rest, k) for k, user_id in enumerate(deleted)}
    found = await asyncio.gather(
        *(http.get(f"/api/v1/users/{uid}") for uid, http in probes.items())
    )
    back = [(uid, response) for uid, response in zip(probes, found, strict=True)]
    back = [(uid, response) for uid, response in back if response.status_code != 404]
    if back:
        problems.append(
            f"{len(back)} of the {len(deleted)} users whose DELETE answered 204 exist again: "
            + "; ".join(
                f"user {user_id} (round {deleted[user_id]}): GET answered "
                f"{response.status_code} {gist(response)}"
                for user_id, response in back[:5]
            )
        )

    final = await database_list(servers[0])
    problems += await clients_problems(v1, v2, final)
    problems += twice_named(v2)
    problems += log_problems(servers, log_marks)
    if rounds < ROUNDS:
        problems.append(f"(stopped after {rounds} of {ROUNDS} rounds: failing, and out of time)")
    await close_all(v1, v2)
    assert not problems, report(problems)


# -- 2. PATCH {"name"} and PATCH {"email"} of one user at once ---------------------------

TRIALS = 30


async def test_a_name_patch_and_an_email_patch_of_one_user_at_once_keep_both_values(
    servers, rest, log_marks
):
    created = await rest[0].post("/api/v1/users", json={"name": unique_name("both")})
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    path, problems = f"/api/v1/users/{user_id}", []
    for t in range(TRIALS):
        name, email = unique_name(f"both {t}"), f"both-{uuid.uuid4().hex[:12]}@example.org"
        renamer, mailer = on(servers, t), on(servers, t + 1)
        answers = await asyncio.gather(
            on(rest, t).patch(path, json={"name": name}),
            on(rest, t + 1).patch(path, json={"email": email}),
        )
        now = (await rest[0].get(path)).json()
        statuses = [
            f"{answer.status_code}{'' if answer.status_code == 200 else ' ' + gist(answer)}"
            for answer in answers
        ]
        lost = [
            f"the {field} PATCH's {value!r}"
            for field, value in (("name", name), ("email", email))
            if now.get(field) != value
        ]
        if statuses != ["200", "200"] or lost:
            problems.append(
                f"trial {t}, user {user_id}: PATCH name on :{renamer.port} answered {statuses[0]}, "
                f"PATCH email on :{mailer.port} answered {statuses[1]}; "
                f"lost {' and '.join(lost) or 'nothing'}: the user is now {now}"
            )
    print(f"{TRIALS - len(problems)} of {TRIALS} trials kept both values")
    problems += log_problems(servers, log_marks)
    assert not problems, report(problems, f"{len(problems)} of {TRIALS} trials went wrong:")


# -- 3. a write that changes nothing sends nothing -----------------------------------------


def list_frames(watcher: ChangesWatcher, start: int) -> list:
    return [frame for frame in watcher.frames[start:] if frame["type"] in ("snapshot", "changes")]


async def test_a_write_that_changes_nothing_answers_the_user_and_sends_no_frame(
    servers, rest, log_marks
):
    kinds = ["PATCH name and email", "PATCH name", "PATCH {}", "PUT", "v2 update"]
    users = []
    for k in range(len(kinds)):
        email = f"unchanged-{uuid.uuid4().hex[:12]}@example.org"
        fields = {"name": unique_name(f"unchanged {k}"), "email": email}
        created = await on(rest, k).post("/api/v1/users", json=fields)
        assert created.status_code == 201, created.text
        users.append(created.json())
    v1 = await v1_watchers(servers)
    v2 = {**await v2_watchers(servers), **await v2_watchers(servers[-1:], "writer")}
    (writer,) = [watcher for label, watcher in v2.items() if "writer" in label]
    problems = await clients_problems(v1, v2, await database_list(servers[0]))
    assert not problems, report(problems)
    held = {label: watcher.version for label, watcher in v2.items()}
    seen = {label: len(watcher.frames) for label, watcher in v2.items()}
    seen_v1 = {label: len(watcher.lists) for label, watcher in v1.items()}

    paths = [f"/api/v1/users/{user['id']}" for user in users]
    same = [{"name": user["name"], "email": user["email"]} for user in users]
    answers = await asyncio.gather(
        on(rest, 0).patch(paths[0], json=same[0]),
        on(rest, 1).patch(paths[1], json={"name": same[1]["name"]}),
        on(rest, 0).patch(paths[2], json={}),
        on(rest, 1).put(paths[3], json=same[3]),
    )
    for kind, user, answer in zip(kinds, users, answers, strict=False):
        if (answer.status_code, body(answer)) != (200, user):
            problems.append(f"{kind} of {user} answered {answer.status_code} {gist(answer)}")
    ack = await writer.answer(await writer.send("update", id=users[4]["id"], **same[4]))
    if (ack["type"], ack.get("user")) != ("ack", users[4]):
        problems.append(f"v2 update of {users[4]} with its own fields was answered {ack}")

    # A real change: each client's next frame brings it from the version it held before,
    # so the writes that changed nothing sent no frame (found without waiting for none).
    kind_of = {user["id"]: kind for kind, user in zip(kinds, users, strict=True)}
    renamed = {**users[0], "name": unique_name("changed")}
    answer = await on(rest, 1).patch(paths[0], json={"name": renamed["name"]})
    assert (answer.status_code, body(answer)) == (200, renamed), answer.text
    final = await database_list(servers[0])
    problems += await clients_problems(v1, v2, final)
    for label, watcher in v2.items():
        frames = list_frames(watcher, seen[label])
        expected = {"type": "changes", "from": held[label], "upserted": [renamed], "deleted": []}
        if not frames or {key: frames[0].get(key) for key in expected} != expected:
            named = sorted(
                {
                    kind_of.get(user["id"], f"user {user['id']}")
                    for frame in frames[:1]
                    for user in frame.get("upserted", [])
                }
            )
            problems.append(
                f"{label} held version {held[label]}; its next frame was "
                f"{brief(frames[0]) if frames else None} (upserting the users of {named}), "
                "not the rename's change set from there"
            )
    for label, watcher in v1.items():
        lists = watcher.lists[seen_v1[label] :]
        if not lists or lists[0] != final:
            problems.append(
                f"{label}'s next list was not the rename's: "
                f"{difference(lists[0], final) if lists else 'none came'}"
            )
    problems += log_problems(servers, log_marks)
    await close_all(v1, v2)
    assert not problems, report(problems)


# -- 4. random writes from every path at once --------------------------------------------

SEED_VARIABLE = "CONCURRENT_WRITES_SEED"
SHARED_EMAILS = ["shared-a@example.org", "shared-b@example.org"]  # a 400 for these is fair
INITIAL_USERS = 6
TARGETS = 10  # updates and deletes pick among the newest this many ids known
LANES = 2  # sets of writers (REST, v2, v1, admin), lane k on process k (of one or two)
OPS = {"rest": 30, "v2": 30, "admin": 8, "v1": 8}  # writes per lane
PAUSE = 0.02  # at most this long between one writer's writes
SHELLS, SHELL_STEPS, SHELL_PAUSE = 2, 12, 0.25  # ORM steps spread over the writers' time
V1_PREFIX = "v1 "  # users created over v1, whose ids nobody learns: ORM code leaves them be

SHELL_CODE = """
import random, sys, time, uuid
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    raise SystemExit("not told to go")
rng = random.Random({seed!r})
for step in range({steps}):
    newest = User.objects.exclude(name__startswith={v1_prefix!r}).order_by("-pk")
    pool = list(newest.values_list("pk", flat=True)[:{targets}])
    ids = rng.sample(pool, min(len(pool), rng.randint(1, 3)))
    roll = rng.random()
    if roll < 0.45:
        User.objects.filter(pk__in=ids).update(name="orm " + uuid.uuid4().hex[:8])
    elif roll < 0.75:
        User.objects.filter(pk__in=ids).delete()
    else:
        count = rng.randint(1, 3)
        User.objects.bulk_create(User(name="orm new " + uuid.uuid4().hex[:8]) for _ in range(count))
    time.sleep(rng.uniform(0, {pause}))
"""


async def start_shell(server_env: dict, code: str) -> asyncio.subprocess.Process:
    """
    Start ``manage.py shell -c code`` on the servers' database (``ready`` waits for Django).

    The code waits for "go" on its stdin before it writes, so that its writes
    fall among the others' rather than a Django start-up (a second or more) later.
    """
    return await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "shell", "-c", f"from users.models import User\n{code}",
        cwd=ROOT, env=server_env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def ready(shell: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(60):
        while (line := await shell.stdout.readline()) and line.strip() != b"ready":
            pass


class Interleaving:
    """What the writers of one randomized run share: the ids they know, what they saw."""

    def __init__(self, seed: int):
        self.seed = seed
        self.known: list[str] = []  # ids created, in order; updates and deletes pick among them
        self.deleted: dict[str, str] = {}  # id -> the write whose answer said it deleted it
        self.v1_names: list[str] = []
        self.problems: list[str] = []
        self.outcomes: Counter = Counter()

    def rng(self, actor: str) -> random.Random:
        return random.Random(f"{self.seed}:{actor}")

    def target(self, rng: random.Random) -> str:
        return rng.choice(self.known[-TARGETS:])

    @staticmethod
    def email(rng: random.Random) -> str:
        roll = rng.random()
        if roll < 0.15:
            return ""
        if roll < 0.3:
            return rng.choice(SHARED_EMAILS)
        return f"{uuid.uuid4().hex[:12]}@example.org"

    @classmethod
    def fields(cls, rng: random.Random, tag: str) -> dict:
        which = rng.choice([("name",), ("email",), ("name", "email")])
        values = {"name": unique_name(tag), "email": cls.email(rng)}
        return {field: values[field] for field in which}

    def check_fields(self, what: str, sent: dict, user: dict) -> None:
        wrong = {field: user.get(field) for field in sent if user.get(field) != sent[field]}
        if wrong:
            self.problems.append(f"{what} sent {sent} and was answered with the user {user}")


def duplicate_email(sent: dict, errors) -> bool:
    """A refusal that the writer caused: an email another user holds."""
    return (
        sent.get("email") in SHARED_EMAILS
        and isinstance(errors, dict)
        and errors.keys() == {"email"}
    )


REST_ANSWERS = {"POST": {201}, "PATCH": {200, 404}, "PUT": {200, 404}, "DELETE": {204, 404}}


async def rest_writer(run: Interleaving, lane: SimpleNamespace) -> None:
    http, where = lane.http, lane.where
    rng = run.rng(f"rest {lane.name}")
    for _ in range(OPS["rest"]):
        roll = rng.random()
        if roll < 0.2:
            method, user_id = "POST", None
            sent = {"name": unique_name("rest"), "email": run.email(rng)}
        elif roll < 0.55:
            method, user_id, sent = "PATCH", run.target(rng), run.fields(rng, "rest patched")
        elif roll < 0.7:
            method, user_id = "PUT", run.target(rng)
            sent = {"name": unique_name("rest put"), "email": run.email(rng)}
        else:
            method, user_id, sent = "DELETE", run.target(rng), None
        path = "/api/v1/users" + (f"/{user_id}" if user_id else "")
        response = await http.request(method, path, json=sent)
        status, what = response.status_code, f"REST {method} of user {user_id} on {where}"
        run.outcomes[f"REST {method} {status}"] += 1
        if status == 400 and duplicate_email(sent or {}, body(response)):
            pass
        elif status not in REST_ANSWERS[method]:
            sent_text = "" if sent is None else f" {sent}"
            run.problems.append(f"{what}{sent_text} answered {status}: {gist(response)}")
        elif status in (200, 201):
            run.check_fields(what, sent, response.json())
            if status == 201:
                run.known.append(response.json()["id"])
        elif status == 204:
            run.deleted.setdefault(user_id, what)
        await asyncio.sleep(rng.uniform(0, PAUSE))


async def v2_writer(run: Interleaving, lane: SimpleNamespace) -> None:
    watcher, where = lane.v2, lane.where
    rng = run.rng(f"v2 {lane.name}")
    for _ in range(OPS["v2"]):
        roll = rng.random()
        if roll < 0.25:
            action, command = "create", {"name": unique_name("v2"), "email": run.email(rng)}
        elif roll < 0.7:
            action, command = "update", {"id": run.target(rng), **run.fields(rng, "v2 updated")}
        else:
            action, command = "delete", {"id": run.target(rng)}
        what = f"v2 {action} {command} on {where}"
        try:
            answer = await watcher.answer(await watcher.send(action, **command), timeout=15)
        except (AssertionError, websockets.ConnectionClosed) as failure:
            run.problems.append(f"{what} got no answer: {failure}")
            return
        outcome = answer["type"] if answer["type"] == "ack" else answer["code"]
        run.outcomes[f"v2 {action} {outcome}"] += 1
        if answer["type"] == "ack":
            if action == "delete":
                run.deleted.setdefault(command["id"], what)
            else:
                sent = {field: value for field, value in command.items() if field != "id"}
                run.check_fields(what, sent, answer["user"])
                if action == "create":
                    run.known.append(answer["user"]["id"])
        elif not (
            (action != "create" and answer["code"] in ("not_found", "conflict"))
            or (answer["code"] == "invalid" and duplicate_email(command, answer.get("errors")))
        ):
            run.problems.append(f"{what} was answered {answer}")
        await asyncio.sleep(rng.uniform(0, PAUSE))


async def v1_creator(run: Interleaving, lane: SimpleNamespace) -> None:
    """Create users over v1; wait for the list holding the last (a socket runs them in order)."""
    watcher, where = lane.v1, lane.where
    rng, names = run.rng(f"v1 {lane.name}"), []
    for _ in range(OPS["v1"]):
        names.append(unique_name(V1_PREFIX.strip()))
        await watcher.ws.send(json.dumps({"action": "create", "name": names[-1], "email": ""}))
        await asyncio.sleep(rng.uniform(0, 5 * PAUSE))
    try:
        async with asyncio.timeout(CONVERGE_SECONDS):
            while names[-1] not in {user["name"] for user in newest_list(watcher) or []}:
                if watcher.task.done():
                    raise TimeoutError
                watcher.changed.clear()
                await watcher.changed.wait()
    except TimeoutError:
        run.problems.append(
            f"v1 writer on {where} never got a list holding its last create "
            f"(socket closed: {watcher.task.done()}, code {watcher.ws.close_code})"
        )
    run.v1_names += names
    errors = [frame for frame in watcher.lists if isinstance(frame, dict)]
    if errors:
        run.problems.append(f"v1 writer on {where} got error frames {errors[:3]}")


async def admin_writer(run: Interleaving, lane: SimpleNamespace) -> None:
    """Write through the admin's forms; where the user is gone, any answer but a 5xx will do."""
    http, where = lane.admin, lane.where
    rng = run.rng(f"admin {lane.name}")
    for _ in range(OPS["admin"]):
        roll = rng.random()
        if roll < 0.2:
            action, user_id, path = "add", None, "/admin/users/user/add/"
            data = {"name": unique_name("admin"), "email": run.email(rng), "_continue": "Save"}
        elif roll < 0.7:
            action, user_id = "change", run.target(rng)
            path = f"/admin/users/user/{user_id}/change/"
            data = {"name": unique_name("admin changed"), "email": run.email(rng), "_save": "Save"}
        else:
            action, user_id = "delete", run.target(rng)
            path, data = f"/admin/users/user/{user_id}/delete/", {"post": "yes"}
        form = await http.get(path)
        token = CSRF_FIELD.search(form.text)  # none when the user is gone (a redirect)
        data["csrfmiddlewaretoken"] = token[1] if token else http.cookies["csrftoken"]
        response = await http.post(path, data=data)
        run.outcomes[f"admin {action} {form.status_code}/{response.status_code}"] += 1
        for step, answer in (("form", form), ("save", response)):
            if answer.status_code >= 500:
                run.problems.append(
                    f"admin {action} of user {user_id} on {where}: the {step} answered "
                    f"{answer.status_code} {gist(answer)}"
                )
        if action == "add" and response.status_code == 302:
            run.known.append(ADMIN_CHANGE_PATH.fullmatch(response.headers["location"])[1])
        await asyncio.sleep(rng.uniform(0, PAUSE))


WRITERS = [rest_writer, v2_writer, v1_creator, admin_writer]


async def orm_in_shells(run: Interleaving, shells: list) -> None:
    """Let the shells write (bulk updates, deletes and creates); report how they ended."""
    for shell in shells:
        shell.stdin.write(b"go\n")
        await shell.stdin.drain()
    for k, shell in enumerate(shells):
        _, stderr = await shell.communicate()
        run.outcomes[f"shell exit {shell.returncode}"] += 1
        if shell.returncode != 0:
            stderr = stderr.decode(errors="replace")
            run.problems.append(
                f"ORM code in shell {k} failed (exit {shell.returncode}), raising "
                f"{dict(raised_in(stderr)) or stderr[-300:]}"
            )


async def test_random_writes_from_every_path_at_once_leave_every_client_on_the_database_list(
    servers, rest, log_marks, server_env
):
    seed = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(2**32))
    print(f"seed {seed} ({SEED_VARIABLE}={seed} replays this plan of writes, not its timing)")
    run = Interleaving(seed)
    shape = {"steps": SHELL_STEPS, "v1_prefix": V1_PREFIX, "targets": TARGETS}
    codes = [
        SHELL_CODE.format(seed=f"{seed}:shell {k}", pause=SHELL_PAUSE, **shape)
        for k in range(SHELLS)
    ]
    shells = [await start_shell(server_env, code) for code in codes]
    try:
        await random_writes_from_every_path(run, servers, rest, shells)
    finally:
        for shell in shells:
            if shell.returncode is None:
                shell.kill()
                await shell.wait()
    run.problems += log_problems(servers, log_marks)
    assert not run.problems, report(
        run.problems, f"seed {seed} ({SEED_VARIABLE}={seed} replays the plan of writes):"
    )


async def random_writes_from_every_path(run: Interleaving, servers, rest, shells) -> None:
    """Write at once from every path; add to ``run.problems`` what went wrong."""
    for k in range(INITIAL_USERS):
        created = await on(rest, k).post("/api/v1/users", json={"name": unique_name("initial")})
        assert created.status_code == 201, created.text
        run.known.append(created.json()["id"])
    lanes = [
        SimpleNamespace(
            name=f"lane {k}",
            where=f":{on(servers, k).port} (lane {k})",
            server=on(servers, k),
            http=on(rest, k),
        )
        for k in range(LANES)
    ]
    v1, v2 = await v1_watchers(servers), await v2_watchers(servers)
    for lane in lanes:
        lane.v1 = ListWatcher(await connect(lane.server.ws_url, max_size=None))
        lane.v2 = await ChangesWatcher.open(lane.server)
    clients = (
        {**v1, **{f"v1 writer on {lane.where}": lane.v1 for lane in lanes}},
        {**v2, **{f"v2 writer on {lane.where}": lane.v2 for lane in lanes}},
    )
    problems = await clients_problems(*clients, await database_list(servers[0]))
    assert not problems, report(problems)
    await asyncio.gather(*(ready(shell) for shell in shells))

    started = time.monotonic()
    async with AsyncExitStack() as stack:
        for lane in lanes:
            lane.admin = await stack.enter_async_context(admin_session(lane.server))
        await asyncio.gather(
            orm_in_shells(run, shells),
            *(writer(run, lane) for lane in lanes for writer in WRITERS),
        )
    writes = sum(count for outcome, count in run.outcomes.items() if "shell" not in outcome)
    print(
        f"{writes} writes (+{LANES * OPS['v1']} over v1) and {SHELLS * SHELL_STEPS} ORM steps "
        f"on {len(servers)} processes in {time.monotonic() - started:.1f} s: "
        f"{dict(sorted(run.outcomes.items()))}"
    )

    final = await database_list(servers[0])
    ids, names = {user["id"] for user in final}, {user["name"] for user in final}
    if back := sorted(set(run.deleted) & ids, key=int):
        run.problems.append(
            f"{len(back)} users answered as deleted are in the database's list: "
            + "; ".join(f"user {user_id} ({run.deleted[user_id]})" for user_id in back[:5])
        )
    if lost := [name for name in run.v1_names if name not in names]:
        run.problems.append(f"{len(lost)} users created over v1 are missing: {lost[:5]}")
    run.problems += await clients_problems(*clients, final)
    run.problems += twice_named(clients[1])
    for label, watcher in v2.items():
        if watcher.errors:
            run.problems.append(
                f"{label}, which sent nothing, got error frames {watcher.errors[:3]}"
            )
    await close_all(*clients)
