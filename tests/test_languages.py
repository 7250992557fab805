"""Every registered language end to end: real server, real WebSocket, real containers.

Hello world, stdin given up front and typed stdin come from each entry's own examples (what
the editor offers), so a language joins this matrix by being registered. A runtime error, a
memory hog and an output flood are programs of each language, in ``PROGRAMS`` below: a
registered language without them fails ``test_every_language_has_test_programs``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from sandbox import LANGUAGES, RunRequest, Status
from sandbox.docker import DockerBackend
from tests.helpers import collect, read_until
from tests.server import ServerProcess
from tests.test_ws import frames_until_exit, next_frame, open_socket, run, stdout_of

pytestmark = pytest.mark.docker

NAME_PROMPT = "What is your name? "
"""Every input example asks this, reads a line and greets it: ``Hello, <line>!``."""


@dataclass(frozen=True)
class Programs:
    error: str
    """Prints ``before``, then fails at run time with a message holding ``bad input``."""
    hog: str
    """Allocates (and touches) memory without end."""
    flood: str
    """Prints without end."""


PROGRAMS: dict[str, Programs] = {
    "python": Programs(
        error='print("before")\nraise ValueError("bad input")\n',
        hog='chunks = []\nwhile True:\n    chunks.append("x" * (1 << 20) + str(len(chunks)))\n',
        flood='while True:\n    print("x" * 99)\n',
    ),
    "javascript": Programs(
        error='console.log("before");\nthrow new Error("bad input");\n',
        hog="const a = [];\nwhile (true) a.push(Buffer.alloc(1 << 20, 1));\n",
        flood='while (true) console.log("x".repeat(99));\n',
    ),
    "typescript": Programs(
        error='console.log("before");\nthrow new Error("bad input");\n',
        hog="const a: Buffer[] = [];\nwhile (true) a.push(Buffer.alloc(1 << 20, 1));\n",
        flood='while (true) console.log("x".repeat(99));\n',
    ),
    "ruby": Programs(
        error='puts "before"\nraise ArgumentError, "bad input"\n',
        hog='chunks = []\nloop { chunks << ("x" * (1 << 20)) + chunks.size.to_s }\n',
        flood='loop { puts "x" * 99 }\n',
    ),
    "bash": Programs(
        # Bash goes on after a failed command; ${var:?message} ends the script.
        error='echo before\n: "${missing:?bad input}"\necho after\n',
        hog='s=x\nwhile true; do s="$s$s"; done\n',
        flood='while true; do echo "$(printf "x%.0s" {1..99})"; done\n',
    ),
    "php": Programs(
        error='<?php\necho "before\\n";\nthrow new RuntimeException("bad input");\n',
        hog='<?php\n$a = [];\nwhile (true) { $a[] = str_repeat("x", 1 << 20) . count($a); }\n',
        flood='<?php\nwhile (true) { echo str_repeat("x", 99), "\\n"; }\n',
    ),
    "lua": Programs(
        error='print("before")\nerror("bad input")\n',
        hog='local t = {}\nwhile true do t[#t + 1] = string.rep("x", 1 << 20) .. #t end\n',
        flood='while true do print(string.rep("x", 99)) end\n',
    ),
    # The compiled languages (the compile branch registers them): inert until they are.
    "c": Programs(
        error='#include <stdio.h>\nint main(void) {\n  puts("before");\n  fflush(stdout);\n'
        '  fprintf(stderr, "bad input\\n");\n  return 3;\n}\n',
        hog="#include <stdlib.h>\n#include <string.h>\nint main(void) {\n"
        "  for (;;) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); }\n}\n",
        flood='#include <stdio.h>\nint main(void) { for (;;) puts("spam spam spam"); }\n',
    ),
    "cpp": Programs(
        error='#include <iostream>\nint main() {\n  std::cout << "before" << std::endl;\n'
        '  std::cerr << "bad input" << std::endl;\n  return 3;\n}\n',
        hog="#include <vector>\nint main() {\n  std::vector<std::vector<char>> all;\n"
        "  for (;;) all.emplace_back(1 << 20, 'x');\n}\n",
        flood='#include <iostream>\nint main() { for (;;) std::cout << "spam spam spam\\n"; }\n',
    ),
    "java": Programs(
        error="public class Main {\n  public static void main(String[] args) {\n"
        '    System.out.println("before");\n'
        '    throw new IllegalStateException("bad input");\n  }\n}\n',
        hog="import java.util.*;\npublic class Main {\n  public static void main(String[] a) {\n"
        "    List<byte[]> all = new ArrayList<>();\n"
        "    for (;;) { byte[] b = new byte[1 << 20]; Arrays.fill(b, (byte) 1); all.add(b); }\n"
        "  }\n}\n",
        flood="public class Main {\n  public static void main(String[] a) {\n"
        '    for (;;) System.out.println("spam spam spam");\n  }\n}\n',
    ),
    "go": Programs(
        error='package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("before")\n'
        '\tpanic("bad input")\n}\n',
        hog="package main\n\nfunc main() {\n\tvar all [][]byte\n\tfor {\n"
        "\t\tb := make([]byte, 1<<20)\n\t\tfor i := range b {\n\t\t\tb[i] = 1\n\t\t}\n"
        "\t\tall = append(all, b)\n\t}\n}\n",
        flood='package main\n\nimport "fmt"\n\nfunc main() {\n\tfor {\n'
        '\t\tfmt.Println("spam spam spam")\n\t}\n}\n',
    ),
    "rust": Programs(
        error='fn main() {\n    println!("before");\n    panic!("bad input");\n}\n',
        hog="fn main() {\n    let mut all = Vec::new();\n"
        "    loop { all.push(vec![1u8; 1 << 20]); }\n}\n",
        flood='fn main() { loop { println!("spam spam spam"); } }\n',
    ),
}

LANGUAGE_IDS = sorted(LANGUAGES)
TESTED_IDS = [id_ for id_ in LANGUAGE_IDS if id_ in PROGRAMS]


async def run_to_exit(
    server: ServerProcess, token: str, language: str, code: str, **fields: Any
) -> list[dict[str, Any]]:
    async with await open_socket(server, token) as ws:
        await run(ws, code, language, **fields)
        return await frames_until_exit(ws)


async def stdout_until(ws: ClientConnection, expected: str) -> str:
    """Read frames until the program's stdout ends with ``expected``."""
    seen = ""
    while not seen.endswith(expected):
        frame = await next_frame(ws)
        assert frame["type"] in ("started", "stage", "output", "stdin_ack"), frame
        if frame["type"] == "output" and frame["stream"] == "stdout":
            seen += frame["data"]
    return seen


@pytest.fixture(scope="module")
def token(server: ServerProcess) -> str:
    """One account for the whole matrix: signing up hashes a password, which takes a while."""
    return server.new_user()[1]


def test_every_language_has_test_programs() -> None:
    missing = [id_ for id_ in LANGUAGE_IDS if id_ not in PROGRAMS]
    assert not missing, f"add an error, a hog and a flood to PROGRAMS for: {missing}"


@pytest.mark.parametrize("language", LANGUAGE_IDS)
async def test_hello_example(server: ServerProcess, token: str, language: str) -> None:
    frames = await run_to_exit(server, token, language, LANGUAGES[language].examples.hello)
    assert frames[0]["type"] == "started" and frames[0]["language"] == language
    assert stdout_of(frames) == "Hello, world!\n"
    assert stdout_of(frames, "stderr") == ""
    assert (frames[-1]["status"], frames[-1]["exit_code"]) == ("success", 0)


@pytest.mark.parametrize("language", LANGUAGE_IDS)
async def test_input_example_with_stdin_up_front(
    server: ServerProcess, token: str, language: str
) -> None:
    code = LANGUAGES[language].examples.input
    frames = await run_to_exit(server, token, language, code, stdin="Ada\n")
    assert stdout_of(frames) == f"{NAME_PROMPT}Hello, Ada!\n"
    assert frames[-1]["status"] == "success"


@pytest.mark.parametrize("language", LANGUAGE_IDS)
async def test_input_example_answers_typed_stdin(
    server: ServerProcess, token: str, language: str
) -> None:
    async with await open_socket(server, token) as ws:
        await run(ws, LANGUAGES[language].examples.input, language)
        # The prompt arrives while the program waits: output is not held in a buffer.
        await stdout_until(ws, NAME_PROMPT)
        await ws.send(json.dumps({"type": "stdin", "data": "Grace\n"}))
        frames = await frames_until_exit(ws)
    assert stdout_of(frames) == "Hello, Grace!\n"
    assert frames[-1]["status"] == "success"


@pytest.mark.parametrize("language", TESTED_IDS)
async def test_runtime_error(server: ServerProcess, token: str, language: str) -> None:
    frames = await run_to_exit(server, token, language, PROGRAMS[language].error)
    assert stdout_of(frames) == "before\n"
    assert "bad input" in stdout_of(frames, "stderr")
    assert frames[-1]["status"] == "error"
    assert frames[-1]["exit_code"] not in (0, None)


@pytest.mark.parametrize("language", TESTED_IDS)
async def test_memory_hog(server: ServerProcess, token: str, language: str) -> None:
    frames = await run_to_exit(server, token, language, PROGRAMS[language].hog)
    assert frames[-1]["status"] == "memory_limit", (frames[-1], stdout_of(frames, "stderr"))


@pytest.mark.parametrize("language", TESTED_IDS)
async def test_output_flood(server: ServerProcess, token: str, language: str) -> None:
    frames = await run_to_exit(server, token, language, PROGRAMS[language].flood)
    assert 0 < len(stdout_of(frames).encode()) <= 10_240
    assert frames[-1]["status"] == "output_limit"
    assert frames[-1]["output_truncated"] is True


# The in-process launchers: what `ruby FILE` and `php FILE` would do ------------------------

SCRIPT_FACTS = {
    # The script's name, its folder as the working directory, the start pipe gone.
    "ruby": (
        'puts [$0, __FILE__, ARGV.inspect, Dir.pwd].join(" ")\n'
        'puts ENV.key?("EXECSTREAM_START_FD"), File.exist?("/proc/self/fd/3")\n'
        "exit 3\n"
    ),
    "php": (
        "<?php\n"
        'echo implode(" ", [$argv[0], __FILE__, json_encode(array_slice($argv, 1)), getcwd()]);\n'
        'echo "\\n", var_export(getenv("EXECSTREAM_START_FD") !== false, true), "\\n";\n'
        'echo var_export(file_exists("/proc/self/fd/3"), true), "\\n";\n'
        "exit(3);\n"
    ),
}


@pytest.mark.parametrize("language", sorted(SCRIPT_FACTS))
async def test_in_process_launcher_runs_the_file_as_its_interpreter_would(
    server: ServerProcess, token: str, language: str
) -> None:
    frames = await run_to_exit(server, token, language, SCRIPT_FACTS[language])
    path = f"/tmp/{LANGUAGES[language].file_name}"
    assert stdout_of(frames) == f"{path} {path} [] /tmp\nfalse\nfalse\n"
    assert (frames[-1]["status"], frames[-1]["exit_code"]) == ("error", 3)


@pytest.mark.parametrize(
    ("language", "code", "message"),
    [
        ("ruby", 'puts "ready"\nloop { sleep 0.05 }\n', "Interrupt"),
        ("php", '<?php\necho "ready\\n";\nwhile (true) { usleep(50000); }\n', ""),
    ],
)
async def test_ctrl_c_ends_the_program_by_sigint(
    server: ServerProcess, token: str, language: str, code: str, message: str
) -> None:
    async with await open_socket(server, token) as ws:
        await run(ws, code, language)
        await stdout_until(ws, "ready\n")
        await ws.send(json.dumps({"type": "signal", "signal": "SIGINT"}))
        frames = await frames_until_exit(ws)
    assert (frames[-1]["status"], frames[-1]["signal"]) == ("killed", "SIGINT")
    assert message in stdout_of(frames, "stderr")


# Under every backend (cold and warm, runc and gVisor) ---------------------------------------


@pytest.mark.parametrize("language", ["ruby", "php"])
async def test_in_process_launchers_under_every_backend(
    backend: DockerBackend, language: str
) -> None:
    examples = LANGUAGES[language].examples
    started = await backend.start(RunRequest(language, examples.input))
    await read_until(started, NAME_PROMPT.encode())
    await started.write_stdin(b"Linus\n")
    done = await collect(started)
    assert done.stdout == b"Hello, Linus!\n"
    assert done.result.status is Status.SUCCESS
