"""Builders of the frames a v2 server sends."""

EPOCH = "9f2c41d07a3b6e58"


def user(user_id: int, name: str | None = None, email: str = "") -> dict[str, str]:
    return {"id": str(user_id), "name": name or f"User {user_id}", "email": email}


def snapshot(version: int, *users: dict, epoch: str = EPOCH, total: int | None = None) -> dict:
    frame = {"type": "snapshot", "epoch": epoch, "version": version, "users": list(users)}
    return frame if total is None else {**frame, "total": total}


def changes(
    start: int, version: int, upserted=(), deleted=(), epoch: str = EPOCH, total: int | None = None
) -> dict:
    frame = {
        "type": "changes",
        "epoch": epoch,
        "from": start,
        "version": version,
        "upserted": list(upserted),
        "deleted": list(deleted),
    }
    return frame if total is None else {**frame, "total": total}


def query_ack(command: dict) -> dict:
    """The server's ack of a ``query`` action: the query it follows now, defaults filled in."""
    query = {"search": "", "order": "id", "limit": None, "offset": 0}
    query.update((name, command[name]) for name in query if name in command)
    return {"type": "ack", "request_id": command["request_id"], "query": query}
