"""The files of a multi-file program, and the rules their names and sizes follow.

The entry file is the request's ``code`` (named by its language); ``files`` are written
beside it. Every check is here, so every door (WebSocket, REST) refuses the same things with
the same codes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sandbox.errors import CodeTooLarge, InvalidFiles

MAX_FILES = 20
MAX_NAME = 100
MAX_DEPTH = 4
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")
"""One folder or file name: letters, digits, ``_ . -``, not starting with a dot (so no
``..``, no hidden files and nothing in the compile stage's ``.build``)."""


@dataclass(frozen=True)
class SourceFile:
    name: str
    """Relative to the entry file's folder: ``util.py``, ``lib/list.h``."""
    content: str


def check_program(entry: str, code: str, files: Sequence[SourceFile], code_bytes: int) -> None:
    """Raise ``InvalidFiles`` or ``CodeTooLarge`` unless the program may be written out."""
    if len(files) > MAX_FILES:
        raise InvalidFiles("too_many_files", f"at most {MAX_FILES} files besides the entry file")
    seen = {entry}
    for file in files:
        _check_name(file.name)
        if file.name in seen:
            raise InvalidFiles("duplicate_file", f"file {file.name!r} is given twice")
        seen.add(file.name)
    for name in seen:
        folder = name.rpartition("/")[0]
        while folder:
            if folder in seen:
                raise InvalidFiles("invalid_file_name", f"{folder!r} is both a file and a folder")
            folder = folder.rpartition("/")[0]
    size = sum(len(text.encode("utf-8", "surrogatepass")) for text in _texts(code, files))
    if size > code_bytes:
        raise CodeTooLarge(size, code_bytes, what="code and files" if files else "code")


def _check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME:
        raise InvalidFiles("invalid_file_name", f"file names have 1 to {MAX_NAME} characters")
    if name.startswith("/"):
        raise InvalidFiles("invalid_file_name", f"{name!r}: absolute paths are not allowed")
    parts = name.split("/")
    if ".." in parts:
        raise InvalidFiles("invalid_file_name", f"{name!r}: '..' is not allowed")
    if len(parts) > MAX_DEPTH or not all(_PART.fullmatch(part) for part in parts):
        raise InvalidFiles(
            "invalid_file_name",
            f"{name!r}: use relative names of letters, digits, '_', '.' and '-' (not starting "
            f"with '.'), in at most {MAX_DEPTH - 1} folders",
        )


def _texts(code: str, files: Sequence[SourceFile]) -> list[str]:
    return [code, *(file.content for file in files)]
