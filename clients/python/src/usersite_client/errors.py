"""The exceptions a LiveUsers and a UserList raise."""


class CommandError(Exception):
    """A command the server refused: its error frame's code, message and field errors."""

    def __init__(self, code: str, message: str, errors: dict[str, list[str]] | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.errors = code, message, errors or {}

    @classmethod
    def from_frame(cls, frame: dict) -> "CommandError":
        """Build the error an error frame describes."""
        return cls(str(frame.get("code")), str(frame.get("message")), frame.get("errors"))


class HandshakeError(Exception):
    """The server turned the socket down in a way that trying again would not change."""


class InvalidQueryError(ValueError):
    """A query the server would refuse, or did (``invalid_query``): the message says which part."""


class OutOfSyncError(Exception):
    """The list cannot follow this frame; only a new snapshot can bring it back."""
