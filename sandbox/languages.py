"""The language registry: the one place that says which languages exist and how they run.

Adding a language means one entry here and its packages in ``Dockerfile.executor``.
Paths in commands use ``{dir}`` for the program's folder (``/tmp`` in a container) and
``{launchers}`` for the folder holding the launchers (``/opt/execstream`` in the image).
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.errors import UnknownLanguage


@dataclass(frozen=True)
class Language:
    """How one language is compiled (if at all) and run inside a sandbox."""

    id: str
    name: str
    version: str
    extension: str
    file_name: str
    launcher: tuple[str, ...]
    """Started before the program is known; it reads the program from stdin, then runs it."""
    run: tuple[str, ...]
    compile: tuple[str, ...] | None = None
    example: str = ""

    def file(self, folder: str) -> str:
        return f"{folder}/{self.file_name}"


_NODE_LAUNCHER = ("node", "{launchers}/launch.js")

LANGUAGES: dict[str, Language] = {
    lang.id: lang
    for lang in (
        Language(
            id="python",
            name="Python",
            version="3.11",
            extension=".py",
            file_name="main.py",
            launcher=("python3", "-u", "{launchers}/launch.py"),
            run=("python3", "-u", "{dir}/main.py"),
            example='name = input("What is your name? ")\nprint(f"Hello, {name}!")\n',
        ),
        Language(
            id="javascript",
            name="JavaScript (Node.js)",
            version="18",
            extension=".js",
            file_name="main.js",
            launcher=_NODE_LAUNCHER,
            run=("node", "{dir}/main.js"),
            example='const greet = (name) => `Hello, ${name}!`;\nconsole.log(greet("world"));\n',
        ),
        Language(
            id="typescript",
            name="TypeScript",
            version="esbuild 0.17",
            extension=".ts",
            file_name="main.ts",
            launcher=_NODE_LAUNCHER,
            compile=(
                "esbuild",
                "{dir}/main.ts",
                "--outfile={dir}/main.js",
                "--format=cjs",
                "--platform=node",
                "--target=node18",
                "--sourcemap=inline",
                "--log-level=warning",
            ),
            run=("node", "--enable-source-maps", "{dir}/main.js"),
            example=(
                "function greet(name: string): string {\n"
                "  return `Hello, ${name}!`;\n"
                "}\n\n"
                'console.log(greet("world"));\n'
            ),
        ),
    )
}


def get_language(language_id: str) -> Language:
    """Return the registered language, or raise ``UnknownLanguage`` naming the supported ones."""
    try:
        return LANGUAGES[language_id]
    except KeyError:
        raise UnknownLanguage(language_id, sorted(LANGUAGES)) from None
