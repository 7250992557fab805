"""The database: users, and every query of the modules beside it, behind one object."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from storage.errors import UsernameTaken
from storage.executions import Executions
from storage.leases import Leases
from storage.models import USER, User
from storage.slots import Slots

USER_EXISTS = "SELECT 1 FROM users WHERE id = ?"


class Database(Executions, Leases, Slots):
    """Users and their stored runs, in whatever database ``url`` names: the users here,
    runs in ``executions``, leases in ``leases``, run slots in ``slots``.

    Safe to share between tasks: every operation has its own session and connection.
    """

    async def create_user(self, username: str, password_hash: str, role: str = USER) -> User:
        """Store a new user; raises ``UsernameTaken`` when the name exists."""
        user = User(username=username, password_hash=password_hash, role=role)
        async with self._session() as session:
            session.add(user)
            try:
                await session.commit()
            except IntegrityError:
                # The unique index decides, so two sign-ups racing for one name cannot both win.
                raise UsernameTaken(username) from None
        return user

    async def get_user(self, user_id: int) -> User | None:
        async with self._read_session() as session:
            return await session.get(User, user_id)

    async def user_exists(self, user_id: int) -> bool:
        """Asked before every run, so kept lean: beside the writer, never queued behind it."""
        if self._quick is not None:
            return self._quick.execute(USER_EXISTS, (user_id,)).fetchone() is not None
        if self._reader is None:
            raise RuntimeError("the database is not open")
        async with self._reader.connect() as conn:
            found = await conn.scalar(select(User.id).where(User.id == user_id))  # type: ignore[arg-type]
        return found is not None

    async def get_user_by_name(self, username: str) -> User | None:
        async with self._session() as session:
            result = await session.exec(select(User).where(User.username == username))
            return result.first()
