#!/usr/bin/env python
"""
Time the list read behind one v2 change set, and show the database's plan for it.

    .venv/bin/python bench/changeset.py --users 1000,100000

For each M: a fresh SQLite database (or --database-url, emptied) with M
users, seeded as bench/fanout.py seeds them, then one create through
users.services; then the relay's read for sockets one version behind
(``users.live.snapshots.read(everyone=False, resumes=[(epoch, version - 1)])``)
is timed --repeat times (median), and each SELECT it ran is shown with the
database's plan for it. A change set's read should not grow with M.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import SEED  # noqa: E402

# As bench/fanout.py runs the servers.
SETTINGS = {
    "DEBUG": "false",
    "SECRET_KEY": "benchmark-only",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "LOG_LEVEL": "WARNING",
}

# Runs in manage.py shell, after the seeding.
MEASURE = """
import statistics, time
from django.db import connection
from django.test.utils import CaptureQueriesContext
from users import services
from users.live import snapshots
services.user_create(name="Changed")
epoch, version = snapshots.current_version()
def change_set_read():
    return snapshots.read(everyone=False, resumes=[(epoch, version - 1)])
with CaptureQueriesContext(connection) as statements:
    reading = change_set_read()
times = []
for _ in range({repeat}):
    started = time.perf_counter()
    change_set_read()
    times.append(time.perf_counter() - started)
print(f"M={users}: read {{1000 * statistics.median(times):.3f}} ms (median of {repeat}), "
      f"{{len(reading.users)}} user(s) in the change set")
prefix = connection.ops.explain_query_prefix()
for statement in statements.captured_queries:
    sql = statement["sql"]
    if sql.lstrip().upper().startswith("SELECT"):
        with connection.cursor() as cursor:
            cursor.execute(f"{{prefix}} {{sql}}")
            plan = " | ".join(str(row[-1]) for row in cursor.fetchall())
        print(f"  {{sql[:90]}}...\\n    plan: {{plan}}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", default="1000,100000", help="values of M, comma-separated")
    parser.add_argument("--repeat", type=int, default=50, help="timed reads per M (50)")
    parser.add_argument("--database-url", help="a database the benchmark may empty (SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for users in (int(m) for m in args.users.split(",")):
            url = args.database_url or f"sqlite:///{Path(folder) / f'changeset-{users}.sqlite3'}"
            env = {**os.environ, **SETTINGS, "DATABASE_URL": url}
            for arguments in (
                ["migrate", "--noinput", "-v0"],
                ["shell", "-v0", "-c", SEED.format(users=users)],
                ["shell", "-v0", "-c", MEASURE.format(users=users, repeat=args.repeat)],
            ):
                command = [sys.executable, "manage.py", *arguments]
                subprocess.run(command, cwd=ROOT, env=env, check=True)


if __name__ == "__main__":
    main()
