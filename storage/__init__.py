"""Users and their stored runs, on any database SQLAlchemy can reach asynchronously.

The package knows nothing about HTTP or the sandbox: callers open a ``Database`` with a URL
and get typed records back.
"""

from storage.database import Database
from storage.errors import CursorNotFound, StorageError, UsernameTaken
from storage.models import CodeExecution, Instance, RunImage, RunSlot, User

__all__ = [
    "CodeExecution",
    "CursorNotFound",
    "Database",
    "Instance",
    "RunImage",
    "RunSlot",
    "StorageError",
    "User",
    "UsernameTaken",
]
