"""The WebSocket endpoint: check the handshake, then hand the socket to a session."""

from __future__ import annotations

from starlette.authentication import requires
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from server.audit import audit
from server.services import services
from server.session import Session
from server.throttle import client_address

POLICY_VIOLATION = 1008


def origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    """Whether the page that opened the socket may: no ``Origin`` (not a browser), one of
    ``allowed``, or by default the server's own origin (the host the request came to).

    Browsers send any site's cookies-free WebSocket to any host; without this check a page
    elsewhere could drive a student's session with the token it got from them.
    """
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if allowed:
        return "*" in allowed or origin in allowed
    host = websocket.headers.get("host", "").lower()
    return origin in (f"http://{host}", f"https://{host}")


@requires("authenticated")  # refuses the handshake (HTTP 403) without a valid token
async def code_socket(websocket: WebSocket) -> None:
    state = services(websocket)
    settings = state.settings
    user = websocket.user
    client = client_address(websocket.scope)
    if not origin_allowed(websocket, settings.allowed_origin_list):
        audit(
            "origin_refused", user=user.username, client=client, origin=websocket.headers["origin"]
        )
        await websocket.close(POLICY_VIOLATION)  # before accept: the handshake is refused
        return
    cap = settings.max_sockets_per_user
    if sum(1 for s in state.sessions if s.user_id == user.id) >= cap:
        audit("socket_cap", user=user.username, client=client, limit=cap)
        # Accepted, then closed with a reason the client can show.
        await websocket.accept()
        await websocket.close(POLICY_VIOLATION, f"too many open sockets: at most {cap} per user")
        return
    session = Session(
        websocket,
        user_id=user.id,
        runs=state.runs,
        max_frame_bytes=settings.max_frame_bytes,
        tokens=state.tokens,
        db=state.db,
        on_language=state.count_languages,
        live=state.live,
    )
    # Counted from here, before the first await, so sockets opened at once cannot pass the cap.
    state.sessions.add(session)
    try:
        await websocket.accept()
        await session.serve()
    finally:
        state.sessions.discard(session)
        if session.language is not None:
            state.count_languages()


routes = [WebSocketRoute("/api/v1/code/ws", code_socket)]
