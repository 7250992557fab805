"""Plots end to end: matplotlib in a real container, image frames over a real WebSocket."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest

from sandbox import LANGUAGES, RunRequest
from sandbox.container import new_owner_id
from sandbox.docker import DockerBackend
from sandbox.languages import preloading
from server.config import Settings
from tests.conftest import SUITE
from tests.helpers import collect
from tests.server import ServerProcess
from tests.test_ws import frames_until_exit, open_socket, run, stdout_of

pytestmark = pytest.mark.docker

PNG = b"\x89PNG\r\n\x1a\n"

PLOT = """\
import matplotlib.pyplot as plt
print("before")
plt.plot([1, 2, 3], [1, 4, 9])
plt.show()
print("after")
"""


async def test_a_shown_figure_arrives_as_an_image_frame_between_its_text(
    server: ServerProcess, user
) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, PLOT)
        frames = await frames_until_exit(ws, timeout=60)
    images = [f for f in frames if f["type"] == "image"]
    assert len(images) == 1
    assert images[0]["mime"] == "image/png"
    assert base64.b64decode(images[0]["data"]).startswith(PNG)
    assert stdout_of(frames) == "before\nafter\n"
    assert stdout_of(frames, "stderr") == ""
    assert frames[-1]["status"] == "success"


async def test_savefig_sends_the_figure_once_and_writes_its_file(
    server: ServerProcess, user
) -> None:
    code = (
        "import matplotlib.pyplot as plt, os\n"
        "plt.plot([3, 1, 2])\n"
        "plt.savefig('out.png')\n"
        "plt.show()\n"
        "print(os.path.getsize('out.png') > 0)\n"
    )
    async with await open_socket(server, user[1]) as ws:
        await run(ws, code)
        frames = await frames_until_exit(ws, timeout=60)
    assert [f["type"] for f in frames].count("image") == 1
    assert stdout_of(frames) == "True\n"


async def test_text_that_looks_like_a_frame_is_never_an_image(server: ServerProcess, user) -> None:
    # The program knows the format but not the run's key (and stdout is never parsed).
    fake = "\\x1eexecstream:" + "ab" * 16 + ":image:4\\n\\x89PNG"
    code = f"import sys\nprint('{fake}')\nprint('{fake}', file=sys.stderr)\n"
    async with await open_socket(server, user[1]) as ws:
        await run(ws, code)
        frames = await frames_until_exit(ws)
    assert not [f for f in frames if f["type"] == "image"]
    assert "execstream:" in stdout_of(frames)
    assert "execstream:" in stdout_of(frames, "stderr")


async def test_images_past_the_cap_give_one_limit_frame(server: ServerProcess, user) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "for i in range(8):\n"
        "    plt.plot([i, 1])\n"
        "    plt.show()\n"
        "print('done')\n"
    )
    async with await open_socket(server, user[1]) as ws:
        await run(ws, code)
        frames = await frames_until_exit(ws, timeout=90)
    images = [f["data"] for f in frames if f["type"] == "image"]
    assert len(images) == 5
    limits = [f for f in frames if f["type"] == "limit"]
    assert len(limits) == 1 and limits[0]["limit"] == "image"
    assert stdout_of(frames) == "done\n"
    assert frames[-1]["status"] == "success"
    # History keeps the plots the run showed, up to the cap, in their order.
    record = await history_record(server, user[1], frames[-1]["execution_id"])
    assert record["image_count"] == 5
    assert [i["data"] for i in record["images"]] == images
    assert {i["mime"] for i in record["images"]} == {"image/png"}


async def history_record(server: ServerProcess, token: str, execution_id: int) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        response = await http.get(f"/api/v1/code/history/{execution_id}")
    assert response.status_code == 200, response.text
    return response.json()


# Preloading (EXECSTREAM_PYTHON_PRELOAD) ----------------------------------------------------

LOADED = "import sys\nprint('matplotlib.pyplot' in sys.modules)\n"
PLOTTING = "import matplotlib\n" + LOADED


async def outcome(backend: DockerBackend, code: str) -> tuple[bool, bytes]:
    run = await backend.start(RunRequest("python", code))
    done = await collect(run)
    await run.close()  # its sandbox gone before the backend closes
    return run.warm, done.stdout


async def test_a_program_that_imports_matplotlib_gets_a_container_that_preloaded_it(
    settings: Settings,
) -> None:
    """A preloading launcher says when its imports are done, and only then is it warm: a
    program that imports matplotlib finds pyplot imported and never waits for the import
    itself; one that does not gets a plain warm container; and while no preloaded one is
    ready, a plotting program takes a plain warm one rather than a cold start."""
    backend = DockerBackend(
        settings.limits, settings.image, pool_size=1, owner=new_owner_id(SUITE), preload=True
    )
    await backend.open()
    try:
        python = LANGUAGES["python"]
        async with asyncio.timeout(120):
            while min(backend.pool.idle(python), backend.pool.idle(preloading(python))) < 1:
                await asyncio.sleep(0.05)
        # The second finds no preloaded one ready: making one takes seconds.
        outcomes = [await outcome(backend, PLOTTING), await outcome(backend, PLOTTING)]
        async with asyncio.timeout(120):
            while backend.pool.idle(python) < 1:
                await asyncio.sleep(0.05)
        outcomes.append(await outcome(backend, LOADED))
        assert outcomes == [(True, b"True\n"), (True, b"False\n"), (True, b"False\n")]
        assert backend.pool.stats()["python-preloaded"]["hits"] == 1
    finally:
        await backend.close()


async def test_a_cold_container_never_waits_for_the_preload(settings: Settings) -> None:
    backend = DockerBackend(
        settings.limits, settings.image, pool_size=0, owner=new_owner_id(SUITE), preload=True
    )
    await backend.open()
    try:
        run = await backend.start(RunRequest("python", PLOTTING))
        done = await collect(run)
        await run.close()
        assert not run.warm and done.stdout == b"False\n", done
    finally:
        await backend.close()
