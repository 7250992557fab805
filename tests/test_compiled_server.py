"""Compiled languages and multi-file programs through the server: WebSocket frames (stage,
compile_error, compile_time), REST, name checks on both doors, history, the languages list."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.server import ServerProcess
from tests.test_ws import frames_until_exit, next_frame, open_socket, run, stdout_of

pytestmark = pytest.mark.docker

C_HELLO = '#include <stdio.h>\nint main(void) { puts("Hello, world!"); return 0; }\n'
C_BROKEN = "int main(void) { return 0 }\n"


def api(server: ServerProcess, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def kinds(frames: list[dict[str, Any]]) -> list[str]:
    """Frame types, stages named, consecutive outputs folded into one."""
    seen: list[str] = []
    for frame in frames:
        kind = f"stage:{frame['stage']}" if frame["type"] == "stage" else frame["type"]
        if (kind == "output" and seen and seen[-1] == "output") or kind == "stdin_ack":
            continue
        seen.append(kind)
    return seen


async def test_stage_frames_come_in_order_with_compile_time(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, C_HELLO, language="c", stdin="")
        frames = await frames_until_exit(ws)
    assert kinds(frames) == ["started", "stage:compile", "stage:run", "output", "exit"]
    exit_ = frames[-1]
    assert exit_["status"] == "success"
    assert stdout_of(frames) == "Hello, world!\n"
    assert exit_["compile_time"] > 0
    assert exit_["execution_time"] > 0


async def test_a_compile_error_ends_the_run_with_the_compilers_messages(
    server: ServerProcess, user
) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, C_BROKEN, language="c")
        frames = await frames_until_exit(ws)
    assert kinds(frames) == ["started", "stage:compile", "output", "exit"]
    exit_ = frames[-1]
    assert exit_["status"] == "compile_error"
    assert exit_["exit_code"] == 1  # gcc's
    assert "main.c:1:26: error: expected" in stdout_of(frames, "stderr")
    assert exit_["compile_time"] > 0


async def test_input_typed_during_the_compile_reaches_the_program(
    server: ServerProcess, user
) -> None:
    code = (
        "use std::io::Read;\nfn main() { let mut s = String::new();"
        ' std::io::stdin().read_to_string(&mut s).unwrap(); print!("got {}", s); }\n'
    )
    async with await open_socket(server, user[1]) as ws:
        await run(ws, code, language="rust")
        assert (await next_frame(ws))["type"] == "started"
        assert await next_frame(ws) == {"type": "stage", "stage": "compile"}
        # rustc takes a good half second: this input waits for the program.
        await ws.send(json.dumps({"type": "stdin", "data": "typed early\n"}))
        await ws.send(json.dumps({"type": "eof"}))
        frames = await frames_until_exit(ws)
    assert stdout_of(frames) == "got typed early\n"
    assert frames[-1]["status"] == "success"


async def test_python_imports_another_file_over_the_socket(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(
            ws,
            "from lib.util import twice\nprint(twice(21))\n",
            files=[
                {"name": "lib/__init__.py", "content": ""},
                {"name": "lib/util.py", "content": "def twice(x):\n    return 2 * x\n"},
            ],
            stdin="",
        )
        frames = await frames_until_exit(ws)
    assert stdout_of(frames) == "42\n"
    assert "stage" not in [f["type"] for f in frames]  # no compile stage for Python


async def test_javascript_requires_another_file(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(
            ws,
            'const { twice } = require("./util");\nconsole.log(twice(21));\n',
            language="javascript",
            files=[{"name": "util.js", "content": "exports.twice = (x) => 2 * x;\n"}],
            stdin="",
        )
        frames = await frames_until_exit(ws)
    assert stdout_of(frames) == "42\n"


BAD_FILES = [
    ([{"name": "../escape.py", "content": ""}], "invalid_file_name"),
    ([{"name": "/etc/passwd", "content": ""}], "invalid_file_name"),
    ([{"name": "a b.py", "content": ""}], "invalid_file_name"),
    ([{"name": ".hidden", "content": ""}], "invalid_file_name"),
    ([{"name": "main.py", "content": ""}], "duplicate_file"),
    ([{"name": "u.py", "content": ""}, {"name": "u.py", "content": ""}], "duplicate_file"),
    ([{"name": f"f{i}.py", "content": ""} for i in range(21)], "too_many_files"),
    ([{"name": "big.py", "content": "x" * 60_000}], "code_too_large"),
]


@pytest.mark.parametrize(("files", "code"), BAD_FILES, ids=[c for _, c in BAD_FILES])
async def test_bad_files_are_refused_over_the_socket(
    server: ServerProcess, user, files: list[dict[str, str]], code: str
) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "print(1)", files=files)
        frame = await next_frame(ws)
        assert frame["type"] == "error"
        assert frame["code"] == code
        # The socket goes on working.
        await run(ws, "print(1)", stdin="")
        assert stdout_of(await frames_until_exit(ws)) == "1\n"


@pytest.mark.parametrize(("files", "code"), BAD_FILES[:4], ids=[c for _, c in BAD_FILES[:4]])
def test_bad_files_are_refused_over_rest(
    server: ServerProcess, user, files: list[dict[str, str]], code: str
) -> None:
    with api(server, user[1]) as client:
        response = client.post(
            "/api/v1/code/execute", json={"language": "python", "code": "1", "files": files}
        )
    assert response.status_code == 422
    assert response.json()["code"] == code
    assert files[0]["name"] in response.json()["detail"]


def test_rest_runs_c_with_a_header_and_history_keeps_the_files(server: ServerProcess, user) -> None:
    files = [{"name": "greet.h", "content": '#define GREETING "Hello from a header"\n'}]
    code = '#include <stdio.h>\n#include "greet.h"\nint main(void) { puts(GREETING); }\n'
    with api(server, user[1]) as client:
        body = client.post(
            "/api/v1/code/execute", json={"language": "c", "code": code, "files": files}
        ).json()
        assert body["status"] == "success", body
        assert body["output"] == "Hello from a header\n"
        assert body["compile_time"] > 0
        record = client.get(f"/api/v1/code/history/{body['execution_id']}").json()
    assert record["files"] == files
    assert record["compile_time"] == body["compile_time"]
    assert record["execution_time"] == body["execution_time"]


def test_rest_compile_error_keeps_compiler_messages_apart(server: ServerProcess, user) -> None:
    with api(server, user[1]) as client:
        body = client.post("/api/v1/code/execute", json={"language": "c", "code": C_BROKEN}).json()
        assert body["status"] == "compile_error"
        assert body["exit_code"] == 1
        assert "error" in body["compile_output"]
        assert body["output"] is None and body["error"] is None
        record = client.get(f"/api/v1/code/history/{body['execution_id']}").json()
    assert record["status"] == "compile_error"
    assert record["compile_output"] == body["compile_output"]


def test_languages_list_the_compiled_languages(server: ServerProcess, user) -> None:
    with api(server, user[1]) as client:
        languages = {lang["id"]: lang for lang in client.get("/api/v1/code/languages").json()}
    for language in ("c", "cpp", "java", "go", "rust"):
        entry = languages[language]
        assert entry["compiled"] is True
        assert entry["compile"] and entry["run"]
        assert entry["examples"]["hello"] and entry["examples"]["input"]
    assert languages["c"]["version"].startswith("gcc 12.")
    assert languages["go"]["version"].startswith("1.19")
    assert languages["rust"]["version"].startswith("1.63")
    assert languages["java"]["version"].startswith("17")
    assert languages["java"]["file_name"] == "{class}.java"
    assert languages["java"]["limits"] == {"pids": 128}
    assert languages["python"]["compile"] is None


async def test_typescript_imports_another_file(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(
            ws,
            'import { twice } from "./util";\nconsole.log(twice(21));\n',
            language="typescript",
            files=[{"name": "util.ts", "content": "export const twice = (x: number) => 2 * x;\n"}],
            stdin="",
        )
        frames = await frames_until_exit(ws)
    assert stdout_of(frames) == "42\n", frames


async def test_the_python_client_sends_files_and_keeps_compiler_messages_apart(
    server: ServerProcess, user
) -> None:
    from client import ExecClient

    async with ExecClient(server.url, user[1]) as client:
        built = await client.run(
            "go",
            'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println(greeting()) }\n',
            files={"greet.go": 'package main\n\nfunc greeting() string { return "hi" }\n'},
            stdin="",
        )
        broken = await client.run("c", C_BROKEN, stdin="")
    assert built.stdout == "hi\n" and built.status == "success"
    assert broken.status == "compile_error"
    assert "error" in broken.compile_output and broken.stderr == ""
