"""Print the language runtime versions of this image as JSON (run once at image build)."""

import json
import platform
import re
import subprocess


def _version(*argv: str) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return out.strip().lstrip("v")


def _found(pattern: str, *argv: str) -> str:
    """The first match of ``pattern`` in what ``argv`` prints (on stdout or stderr)."""
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    match = re.search(pattern, done.stdout + done.stderr)
    return match.group(1) if match else "unknown"


print(
    json.dumps(
        {
            "python": platform.python_version(),
            "javascript": _version("node", "--version"),
            "typescript": "esbuild " + _version("esbuild", "--version"),
            "c": "gcc " + _found(r"(\d+\.\d+\.\d+)", "gcc", "--version"),
            "cpp": "g++ " + _found(r"(\d+\.\d+\.\d+)", "g++", "--version"),
            "java": _found(r"javac (\S+)", "javac", "-version"),
            "go": _found(r"go(\d+\.\d+(?:\.\d+)?)", "go", "version"),
            "rust": _found(r"rustc (\S+)", "rustc", "--version"),
            "ruby": _version("ruby", "-e", "print RUBY_VERSION"),
            "bash": _version(
                "bash", "-c", "echo ${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}.${BASH_VERSINFO[2]}"
            ),
            "php": _version("php", "-r", "echo PHP_VERSION;"),
            "lua": _version("lua5.4", "-v").split()[1],
        }
    )
)
