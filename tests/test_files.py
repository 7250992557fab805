"""The rules of multi-file programs and Java's entry class, without an engine (fast)."""

from __future__ import annotations

import json

import pytest

from sandbox import CodeTooLarge, InvalidFiles, RunRequest, SourceFile
from sandbox.backend import compile_header, header
from sandbox.docker import DockerBackend
from sandbox.files import MAX_FILES, check_program
from sandbox.languages import LANGUAGES, main_class
from server.config import Settings


def files(*names: str) -> list[SourceFile]:
    return [SourceFile(name, "") for name in names]


def test_good_names_pass() -> None:
    check_program("main.py", "", files("util.py", "lib/__init__.py", "lib/a-b_c.2.py"), 100)


@pytest.mark.parametrize(
    ("names", "code"),
    [
        (("../x.py",), "invalid_file_name"),
        (("lib/../../x.py",), "invalid_file_name"),
        (("/etc/passwd",), "invalid_file_name"),
        (("",), "invalid_file_name"),
        (("a b.py",), "invalid_file_name"),
        (("lib//x.py",), "invalid_file_name"),
        (("lib/",), "invalid_file_name"),
        ((".env",), "invalid_file_name"),
        (("x\\y.py",), "invalid_file_name"),
        (("é.py",), "invalid_file_name"),
        (("a/b/c/d/e.py",), "invalid_file_name"),
        (("x" * 101,), "invalid_file_name"),
        (("lib", "lib/x.py"), "invalid_file_name"),
        (("main.py",), "duplicate_file"),
        (("u.py", "u.py"), "duplicate_file"),
        (tuple(f"f{i}.py" for i in range(MAX_FILES + 1)), "too_many_files"),
    ],
)
def test_bad_names_are_refused_with_their_code(names: tuple[str, ...], code: str) -> None:
    with pytest.raises(InvalidFiles) as caught:
        check_program("main.py", "", files(*names), 100)
    assert caught.value.code == code


def test_code_and_files_share_the_code_limit() -> None:
    check_program("main.py", "x" * 50, [SourceFile("u.py", "y" * 50)], 100)
    with pytest.raises(CodeTooLarge, match="code and files is 101 bytes"):
        check_program("main.py", "x" * 50, [SourceFile("u.py", "é" * 25 + "y")], 100)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("public class Hello { public static void main(String[] a) {} }", "Hello"),
        ("// public class Decoy\n/* public class Other */\npublic final class Real {}", "Real"),
        ("class Helper {}\npublic class Entry {}", "Entry"),
        ("class OnlyOne { public static void main(String[] a) {} }", "OnlyOne"),
        ("interface Nothing {}", "Main"),
    ],
)
def test_javas_entry_class(code: str, expected: str) -> None:
    assert main_class(code) == expected
    assert LANGUAGES["java"].entry_name(code) == f"{expected}.java"


def test_commands_are_filled_from_the_program() -> None:
    java = LANGUAGES["java"]
    code = "public class Hello {}"
    extra = [SourceFile("Util.java", ""), SourceFile("notes.txt", "")]
    compiled = json.loads(compile_header(java, code, 15, "/tmp", "/opt/x", extra).split(b"\n")[1])
    assert compiled["file"] == "/tmp/Hello.java"
    assert compiled["compile"][-2:] == ["Hello.java", "Util.java"]  # not notes.txt
    assert compiled["out"] == "/tmp/.build"
    assert "-J-XX:SharedArchiveFile=/opt/x/javac.jsa" in compiled["compile"]
    run = header(java, code, 10, "/tmp", "/opt/x", extra, b"TAR").decode()
    assert run.endswith('"artifact": 3}TAR')
    assert '"-cp", "/tmp", "Hello"' in run


async def test_the_run_stage_after_a_compile_gets_the_runs_plot_key(settings: Settings) -> None:
    """The compile header has no key (a compiler sends no plots); the run stage's has it."""
    backend = DockerBackend(settings.limits, "unused")
    headers: list[dict] = []

    async def ready(language, make_header):  # type: ignore[no-untyped-def]
        size, rest = make_header(object()).split(b"\n", 1)
        headers.append(json.loads(rest[: int(size)]))
        return object(), True

    backend._ready = ready  # type: ignore[method-assign]
    request = RunRequest("c", "int main(void) { return 0; }\n")
    await backend._start_run(LANGUAGES["c"], request, 5.0, "ab" * 16, b"TAR")
    assert headers[0]["key"] == "ab" * 16
    assert headers[0]["artifact"] == 3
    compiled = json.loads(compile_header(LANGUAGES["c"], "", 15, "/tmp", "/opt/x").split(b"\n")[1])
    assert "key" not in compiled
