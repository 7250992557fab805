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
