"""Print the language runtime versions of this image as JSON (run once at image build)."""

import json
import platform
import subprocess


def _version(*argv: str) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return out.strip().lstrip("v")


print(
    json.dumps(
        {
            "python": platform.python_version(),
            "javascript": _version("node", "--version"),
            "typescript": "esbuild " + _version("esbuild", "--version"),
        }
    )
)
