"""What the live list's delivery needs of a socket (users.sockets.consumers implements it)."""

from typing import Protocol, runtime_checkable

from ..queries import Query
from .snapshots import Frame


@runtime_checkable
class Subscriber(Protocol):
    """A socket kept on the newest list: the fan-out offers it frames, the watchdog may end it."""

    protocol: int  # 1: the whole list as a bare array; 2: snapshots and change sets
    query: Query | None  # a live query's window instead of the whole list (v2)
    # (epoch, version) of the list the client holds; (None, None) for none, or v1.
    list_at: tuple[str | None, int | None]
    sending_since: float | None  # the loop's time when a send still unfinished began

    @property
    def version(self) -> int:
        """The newest version offered; -1 when the next frame must be a whole list."""

    def offer(self, frame: Frame) -> None:
        """Make ``frame`` the next to send, unless the client has or awaits a newer list."""

    def needs_whole_list(self) -> None:
        """Forget what was offered: the versions of a new epoch say nothing of it."""

    def up_to_date_at(self, version: int) -> None:
        """Note that ``version`` changed nothing the client shows."""

    def end(self) -> None:
        """End the socket: its client takes no frames."""
