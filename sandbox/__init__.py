"""Run untrusted programs in throw-away sandboxes and stream what they do.

The package knows nothing about HTTP or databases: callers hand it a ``RunRequest`` and get
a ``Run`` back.
"""

from sandbox.backend import Backend
from sandbox.errors import (
    BackendUnavailable,
    CodeTooLarge,
    InvalidFiles,
    InvalidTimeout,
    SandboxError,
    StdinBacklog,
    StdinTooLarge,
    TooManyRuns,
    UnknownLanguage,
)
from sandbox.files import SourceFile
from sandbox.languages import LANGUAGES, Language, get_language
from sandbox.model import SIGNALS, Image, Limits, Output, Result, RunRequest, Stage, Status
from sandbox.run import Run

__all__ = [
    "LANGUAGES",
    "SIGNALS",
    "Backend",
    "BackendUnavailable",
    "CodeTooLarge",
    "Image",
    "InvalidFiles",
    "InvalidTimeout",
    "Language",
    "Limits",
    "Output",
    "Result",
    "Run",
    "RunRequest",
    "SandboxError",
    "SourceFile",
    "Stage",
    "Status",
    "StdinBacklog",
    "StdinTooLarge",
    "TooManyRuns",
    "UnknownLanguage",
    "get_language",
]
