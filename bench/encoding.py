#!/usr/bin/env python
"""
Time the encoding of the live list's frames: the standard library's json, orjson, msgspec.

    .venv/bin/python bench/encoding.py [--users 100000] [--repeat 15]

In this process, no server: rows shaped as users.live.snapshots reads them (named
tuples of id, name, email, version; a fifth of the names non-ASCII) become
the text a socket is sent. For each encoder, the median of --repeat runs of

- ``snapshot``: the whole list's users as protocol v1's array (which v2's
  snapshot frame wraps), from the rows: the wire dicts and their encoding;
- ``encode only``: the same array from dicts already built;
- ``changes N``: a v2 change set of N upserted users and N deleted ids.

Each encoder's text is first checked to be equal to the standard library's
(``json.dumps(ensure_ascii=False, separators=(",", ":"))``, what v1 sends).
Ratios are to the standard library's time in the same run. This work runs
on the server's event loop, so a snapshot's time is how long it holds the
loop up.
"""

import argparse
import json
import statistics
import time
from collections import namedtuple

import msgspec
import orjson

Row = namedtuple("Row", "id name email version")
NAMES = ["Bench user {}", "Zoë Ünal {}", "Łukasz Żółć {}", "山田 太郎 {}", "Αλέξης {}"]


def rows(count: int) -> list[Row]:
    return [
        Row(i + 1, NAMES[i % len(NAMES)].format(i), f"user{i}@example.org", i + 1)
        for i in range(count)
    ]


def wire(users: list[Row]) -> list[dict]:
    """users.serializers.UserSerializer.to_representation, for each row."""
    return [{"id": str(user.id), "name": user.name, "email": user.email} for user in users]


ENCODERS = {
    "json": lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":")),
    "orjson": lambda value: orjson.dumps(value).decode(),
    "msgspec": lambda value: msgspec.json.encode(value).decode(),
}


def changes(users: list[Row]) -> dict:
    return {
        "type": "changes",
        "epoch": "0123456789abcdef0123456789abcdef",
        "from": 100,
        "version": 100 + len(users),
        "upserted": wire(users),
        "deleted": [str(user.id + 10**6) for user in users],
    }


def median_seconds(job, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        job()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000, help="(100000)")
    parser.add_argument("--repeat", type=int, default=15, help="(15)")
    args = parser.parse_args()
    everyone = rows(args.users)
    dicts = wire(everyone)
    cases = {
        "snapshot": lambda encode: encode(wire(everyone)),
        "encode only": lambda encode: encode(dicts),
        **{
            f"changes {n}": (lambda few: lambda encode: encode(changes(few)))(everyone[:n])
            for n in (1, 10, 100)
        },
    }
    reference = ENCODERS["json"]
    print(f"{args.users} users; snapshot text {len(reference(dicts).encode()):,} bytes")
    print(f"{'case':<12} " + " ".join(f"{name:>22}" for name in ENCODERS))
    for case, job in cases.items():
        expected = job(reference)
        cells, base = [], None
        for name, encode in ENCODERS.items():
            if job(encode) != expected:
                raise SystemExit(f"{name}'s {case} differs from json's")
            seconds = median_seconds(lambda job=job, encode=encode: job(encode), args.repeat)
            base = base or seconds
            unit, scale = ("ms", 1e3) if seconds >= 1e-4 else ("µs", 1e6)
            cells.append(f"{seconds * scale:9.2f} {unit} ({seconds / base:4.2f}x)")
        print(f"{case:<12} " + " ".join(f"{cell:>22}" for cell in cells))


if __name__ == "__main__":
    main()
