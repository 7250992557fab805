"""Compiled languages (c, cpp, java, go, rust) in real containers: the compile stage, then the
run, each language through the same cases. On runc with warm pools, to keep it affordable;
one language is shown under every backend variant (runsc too) at the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sandbox import RunRequest, SourceFile, Status
from sandbox.container import new_owner_id
from sandbox.docker import DockerBackend
from sandbox.languages import LANGUAGES
from server.config import Settings
from tests.conftest import SUITE
from tests.helpers import collect, read_until

pytestmark = pytest.mark.docker

COMPILED = ("c", "cpp", "java", "go", "rust")

BROKEN = {
    "c": "int main(void) { return 0 }\n",
    "cpp": "int main() { undeclared(); }\n",
    "java": "public class Main { public static void main(String[] a) { int x = ; } }\n",
    "go": "package main\n\nfunc main() { x := 1 }\n",
    "rust": 'fn main() { let x: i32 = "text"; }\n',
}
CRASH = {
    "c": '#include <stdio.h>\nint main(void) { fprintf(stderr, "boom\\n"); return 3; }\n',
    "cpp": '#include <stdexcept>\nint main() { throw std::runtime_error("boom"); }\n',
    "java": "public class Main { public static void main(String[] a) {"
    ' throw new IllegalStateException("boom"); } }\n',
    "go": 'package main\n\nfunc main() { panic("boom") }\n',
    "rust": 'fn main() { panic!("boom"); }\n',
}
HOG = {
    "c": "#include <stdlib.h>\n#include <string.h>\n"
    "int main(void) { for (;;) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); } }\n",
    "cpp": "#include <vector>\nint main() { std::vector<std::vector<char>> all;"
    " for (;;) all.emplace_back(1 << 20, 'x'); }\n",
    "java": "import java.util.*;\npublic class Main { public static void main(String[] a) {"
    " List<byte[]> all = new ArrayList<>(); for (;;) { byte[] b = new byte[1 << 20];"
    " Arrays.fill(b, (byte) 1); all.add(b); } } }\n",
    "go": "package main\n\nfunc main() {\n\tvar all [][]byte\n\tfor {\n"
    "\t\tb := make([]byte, 1<<20)\n\t\tfor i := range b {\n\t\t\tb[i] = 1\n\t\t}\n"
    "\t\tall = append(all, b)\n\t}\n}\n",
    "rust": "fn main() { let mut all = Vec::new(); loop { all.push(vec![1u8; 1 << 20]); } }\n",
}
FLOOD = {
    "c": '#include <stdio.h>\nint main(void) { for (;;) puts("spam spam spam"); }\n',
    "cpp": '#include <iostream>\nint main() { for (;;) std::cout << "spam spam spam\\n"; }\n',
    "java": "public class Main { public static void main(String[] a) {"
    ' for (;;) System.out.println("spam spam spam"); } }\n',
    "go": 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfor {\n'
    '\t\tfmt.Println("spam spam spam")\n\t}\n}\n',
    "rust": 'fn main() { loop { println!("spam spam spam"); } }\n',
}


@pytest.fixture(scope="module")
async def warm(settings: Settings) -> AsyncIterator[DockerBackend]:
    backend = DockerBackend(
        settings.limits,
        settings.image,
        pool_size=1,
        owner=new_owner_id(SUITE),
        runtime="runc",
        compile_limits=settings.compile_limits,
    )
    await backend.open()
    yield backend
    await backend.close()


async def start(backend: DockerBackend, language: str, code: str, **fields: object):
    return await backend.start(RunRequest(language, code, **fields))  # type: ignore[arg-type]


@pytest.mark.parametrize("language", COMPILED)
async def test_hello_world_compiles_then_runs(warm: DockerBackend, language: str) -> None:
    run = await start(warm, language, LANGUAGES[language].examples.hello, stdin=b"")
    got = await collect(run)
    assert got.result.status is Status.SUCCESS, got
    assert got.stages == ["compile", "run"]
    assert got.stdout == b"Hello, world!\n"
    assert got.result.compile_time is not None and got.result.compile_time > 0
    assert got.result.execution_time > 0
    assert run.version == warm.versions[language]


@pytest.mark.parametrize("language", COMPILED)
async def test_stdin_given_up_front(warm: DockerBackend, language: str) -> None:
    run = await start(warm, language, LANGUAGES[language].examples.input, stdin=b"Ada\n")
    got = await collect(run)
    assert got.result.status is Status.SUCCESS, got
    assert got.stdout == b"What is your name? Hello, Ada!\n"


@pytest.mark.parametrize("language", COMPILED)
async def test_interactive_stdin(warm: DockerBackend, language: str) -> None:
    run = await start(warm, language, LANGUAGES[language].examples.input)
    async with asyncio.timeout(30):
        await read_until(run, b"What is your name? ")
        await run.write_stdin(b"Grace\n")
        got = await collect(run)
    assert got.stdout == b"Hello, Grace!\n"
    assert got.result.status is Status.SUCCESS


@pytest.mark.parametrize("language", COMPILED)
async def test_compile_error(warm: DockerBackend, language: str) -> None:
    got = await collect(await start(warm, language, BROKEN[language], stdin=b""))
    assert got.result.status is Status.COMPILE_ERROR
    assert got.stages == ["compile"]  # the program never ran
    assert got.result.exit_code not in (0, None)  # the compiler's own exit code
    said = b"declared but not used" if language == "go" else b"error"
    assert said in got.compiler
    assert got.stdout == got.stderr == b""
    assert got.result.compile_time is not None


@pytest.mark.parametrize("language", COMPILED)
async def test_runtime_error(warm: DockerBackend, language: str) -> None:
    got = await collect(await start(warm, language, CRASH[language], stdin=b""))
    assert got.result.status is Status.ERROR, got
    assert got.stages == ["compile", "run"]
    assert got.result.exit_code != 0 or got.result.signal is not None
    if language != "cpp":  # an uncaught C++ exception says what() on stderr too, via abort
        assert b"boom" in got.stderr
    assert got.compiler == b""


@pytest.mark.parametrize("language", COMPILED)
async def test_memory_hog_meets_the_memory_limit(warm: DockerBackend, language: str) -> None:
    got = await collect(await start(warm, language, HOG[language], stdin=b""))
    assert got.result.status is Status.MEMORY_LIMIT, got


@pytest.mark.parametrize("language", COMPILED)
async def test_output_cap(warm: DockerBackend, language: str) -> None:
    got = await collect(await start(warm, language, FLOOD[language], stdin=b""))
    assert got.result.status is Status.OUTPUT_LIMIT
    assert got.result.output_truncated
    assert len(got.stdout) <= warm.limits.output_bytes
    assert got.stdout.startswith(b"spam spam spam\n")


# Multi-file programs and the stages -------------------------------------------------------


async def test_c_with_a_header_and_a_second_source(warm: DockerBackend) -> None:
    files = (
        SourceFile("lib/greet.h", "void greet(const char *name);\n"),
        SourceFile(
            "greet.c", '#include <stdio.h>\nvoid greet(const char *n) { printf("hi %s\\n", n); }\n'
        ),
    )
    code = '#include "lib/greet.h"\nint main(void) { greet("Ada"); return 0; }\n'
    got = await collect(await start(warm, "c", code, stdin=b"", files=files))
    assert got.result.status is Status.SUCCESS, got
    assert got.stdout == b"hi Ada\n"


async def test_java_with_two_classes_finds_the_entry_class(warm: DockerBackend) -> None:
    code = (
        "// class Decoy in a comment does not count\n"
        "public class Hello {\n"
        '    public static void main(String[] a) { System.out.println(Greeter.greet("Ada")); }\n'
        "}\n"
    )
    files = (
        SourceFile(
            "Greeter.java",
            'public class Greeter { static String greet(String n) { return "Hello, " + n; } }\n',
        ),
    )
    got = await collect(await start(warm, "java", code, stdin=b"", files=files))
    assert got.result.status is Status.SUCCESS, got
    assert got.stdout == b"Hello, Ada\n"


async def test_python_imports_a_module_beside_it(warm: DockerBackend) -> None:
    files = (SourceFile("util.py", "def twice(x):\n    return 2 * x\n"),)
    got = await collect(
        await start(warm, "python", "import util\nprint(util.twice(21))\n", stdin=b"", files=files)
    )
    assert got.result.status is Status.SUCCESS, got
    assert got.stdout == b"42\n"
    assert got.stages == []  # no compile stage: no stage markers


async def test_input_typed_during_the_compile_reaches_the_program(
    warm: DockerBackend,
) -> None:
    run = await start(warm, "c", LANGUAGES["c"].examples.input)
    await run.write_stdin(b"Early\n")  # the compiler is still at work
    got = await collect(run)
    assert got.stages == ["compile", "run"]
    assert got.stdout == b"What is your name? Hello, Early!\n"


async def test_stop_during_the_compile_kills_the_run(warm: DockerBackend) -> None:
    run = await start(warm, "rust", LANGUAGES["rust"].examples.hello)
    await asyncio.sleep(0.1)
    await run.kill()
    got = await collect(run)
    assert got.result.status is Status.KILLED
    assert "run" not in got.stages


async def test_compiler_messages_are_capped(warm: DockerBackend) -> None:
    code = "int main(void) {\n" + "".join(f"  undefined_{i};\n" for i in range(500)) + "}\n"
    got = await collect(await start(warm, "c", code, stdin=b""))
    assert got.result.status is Status.COMPILE_ERROR
    assert got.result.output_truncated
    cap = warm.compile_limits.output_bytes
    assert b"compiler messages cut at" in got.compiler
    assert cap <= len(got.compiler) <= cap + 100


async def test_a_compile_past_its_wall_time_is_a_compile_error(settings: Settings) -> None:
    import dataclasses

    backend = DockerBackend(
        settings.limits,
        settings.image,
        owner=new_owner_id(SUITE),
        runtime="runc",
        compile_limits=dataclasses.replace(settings.compile_limits, wall_time=1.0),
    )
    await backend.open()
    try:
        # Constant evaluation that keeps the compiler busy for minutes.
        code = (
            "constexpr long f() { long s = 0;\n"
            "  for (long i = 0; i < 200000; ++i) for (long j = 0; j < 200000; ++j) s += j;\n"
            "  return s; }\n"
            "constexpr long x = f();\nint main() { return x == 0; }\n"
        )
        run = await backend.start(RunRequest("cpp", code, stdin=b""))
        got = await collect(run)
        await run.close()
    finally:
        await backend.close()
    assert got.result.status is Status.COMPILE_ERROR
    assert b"took longer than 1 s" in got.compiler


# Every backend variant, runsc included ------------------------------------------------------


async def test_c_under_every_backend(backend: DockerBackend) -> None:
    got = await collect(
        await backend.start(RunRequest("c", LANGUAGES["c"].examples.input, stdin=b"Ada\n"))
    )
    assert got.result.status is Status.SUCCESS, got
    assert got.stages == ["compile", "run"]
    assert got.stdout == b"What is your name? Hello, Ada!\n"
    broken = await collect(await backend.start(RunRequest("c", BROKEN["c"], stdin=b"")))
    assert broken.result.status is Status.COMPILE_ERROR
    assert b"error" in broken.compiler


async def test_a_build_larger_than_the_runs_tmp_is_a_compile_error(settings: Settings) -> None:
    import dataclasses

    backend = DockerBackend(
        dataclasses.replace(settings.limits, tmp_bytes=1024 * 1024),
        settings.image,
        owner=new_owner_id(SUITE),
        runtime="runc",
        compile_limits=settings.compile_limits,
    )
    await backend.open()
    try:
        run = await backend.start(RunRequest("go", LANGUAGES["go"].examples.hello, stdin=b""))
        got = await collect(run)  # a Go binary is about 2 MB
        await run.close()
    finally:
        await backend.close()
    assert got.result.status is Status.COMPILE_ERROR
    assert got.result.exit_code == 0  # the compiler was fine: the build cannot run
    assert b"the build is larger than 1048576 bytes" in got.compiler
