"""The WebSocket endpoint: authenticate the handshake, then hand the socket to a session."""

from __future__ import annotations

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from server.auth import authenticate
from server.errors import ApiError
from server.services import services
from server.session import Session

POLICY_VIOLATION = 1008


async def code_socket(websocket: WebSocket) -> None:
    state = services(websocket)
    try:
        user = await authenticate(websocket, state.db, state.tokens)
    except ApiError:
        # Closing before accepting refuses the handshake (HTTP 403).
        await websocket.close(POLICY_VIOLATION)
        return
    await websocket.accept()
    settings = state.settings
    session = Session(
        websocket,
        user_id=user.id,
        runs=state.runs,
        max_frame_bytes=settings.max_frame_bytes,
        tokens=state.tokens,
        db=state.db,
    )
    state.sessions.add(session)
    try:
        await session.serve()
    finally:
        state.sessions.discard(session)


routes = [WebSocketRoute("/api/v1/code/ws", code_socket)]
