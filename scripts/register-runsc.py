#!/usr/bin/env python3
"""Register runsc in a Docker daemon.json, merged into what is there: never clobbers it.

Usage: register-runsc.py DAEMON_JSON RUNSC_PATH. Prints what it did. An existing ``runsc``
entry is kept as it is (someone chose its flags); a file that is not a JSON object is left
untouched and the script fails.
"""

import json
import os
import sys


def main(path: str, runsc: str) -> int:
    try:
        with open(path) as f:
            config = json.load(f)
    except FileNotFoundError:
        config = {}
    except ValueError as exc:
        print(f"{path} is not valid JSON ({exc}); not changed", file=sys.stderr)
        return 1
    if not isinstance(config, dict) or not isinstance(config.get("runtimes", {}), dict):
        print(
            f"{path} does not hold a JSON object with a runtimes object; not changed",
            file=sys.stderr,
        )
        return 1
    runtimes = config.setdefault("runtimes", {})
    if "runsc" in runtimes:
        print(f"runsc is already registered in {path}")
        return 0
    # Without --network=none, runsc refuses to start in the host's network namespace.
    runtimes["runsc"] = {"path": runsc, "runtimeArgs": ["--network=none"]}
    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    if os.path.exists(path):
        os.chmod(temporary, os.stat(path).st_mode & 0o7777)
    os.replace(temporary, path)
    print(f"runsc registered in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]) if len(sys.argv) == 3 else 2)
