"""Typed sandbox errors, each with a stable code that the server maps to its protocols."""

from __future__ import annotations


class SandboxError(Exception):
    """Base of every error the sandbox raises on purpose."""

    code = "sandbox_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownLanguage(SandboxError):
    code = "unknown_language"

    def __init__(self, language: str, supported: list[str]) -> None:
        super().__init__(f"unknown language {language!r}; supported: {', '.join(supported)}")
        self.language = language
        self.supported = supported


class CodeTooLarge(SandboxError):
    code = "code_too_large"

    def __init__(self, size: int, limit: int, what: str = "code") -> None:
        super().__init__(f"{what} is {size} bytes of UTF-8; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


class InvalidFiles(SandboxError):
    """The ``files`` of a program break a rule; ``code`` says which (sandbox/files.py)."""

    CODES = ("invalid_file_name", "duplicate_file", "too_many_files")

    def __init__(self, code: str, message: str) -> None:
        assert code in self.CODES
        super().__init__(message)
        self.code = code


class InvalidTimeout(SandboxError):
    code = "invalid_timeout"

    def __init__(self, timeout: float, limit: float) -> None:
        super().__init__(f"timeout must be more than 0 and at most {limit:g} s, got {timeout:g}")


class BackendUnavailable(SandboxError):
    """The engine behind the sandbox cannot run programs right now (our side, not the user's)."""

    code = "backend_unavailable"


class RuntimeMissing(BackendUnavailable):
    """The runtime asked for explicitly is not one the engine has: a configuration error."""

    code = "runtime_missing"


class StdinTooLarge(SandboxError):
    code = "stdin_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"stdin is {size} bytes of UTF-8; the limit is {limit} bytes")


class TooManyRuns(SandboxError):
    """A cap on concurrent runs was reached; trying again later will work."""

    code = "too_many_runs"


class StdinBacklog(SandboxError):
    """The program is not reading its input fast enough: more would pile up in our memory."""

    code = "stdin_backlog"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the program has not read {limit} bytes of input sent to it; wait before sending more"
        )
