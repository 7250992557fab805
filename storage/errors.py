"""Typed storage errors, each with a stable code that the server maps to its protocols."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error the storage raises on purpose."""

    code = "storage_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsernameTaken(StorageError):
    code = "username_taken"

    def __init__(self, username: str) -> None:
        super().__init__(f"username {username!r} is taken")
        self.username = username


class CursorNotFound(StorageError):
    """A history cursor names a run that is not (or no longer) there."""

    code = "invalid_cursor"

    def __init__(self, execution_id: int) -> None:
        super().__init__(f"cursor {execution_id} names no run of yours: start again without it")
        self.execution_id = execution_id
