"""The language registry: the one place that says which languages exist and how they run.

Adding a language means one entry here and its packages in ``Dockerfile.executor``.
Paths in commands use ``{dir}`` for the program's folder (``/tmp`` in a container) and
``{launchers}`` for the folder holding the launchers (``/opt/execstream`` in the image).

A compiled language has a ``compile_stage``: it runs in a container of its own, made with the
compile limits, whose launcher (``COMPILE_LAUNCHER``) writes the files, runs the command and
sends back what it wrote to ``{out}``; the run container unpacks that beside the files and
starts ``run``. Its commands may also use ``{sources}`` (every file of the program with the
language's extension, the entry file first, as separate arguments) and ``{class}`` (Java's
entry class, see ``main_class``). A ``run`` whose first word is a file in ``{dir}`` (a built
binary) is started from memory: ``/tmp`` is mounted ``noexec``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbox.errors import UnknownLanguage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sandbox.files import SourceFile
    from sandbox.model import Limits

COMPILE_LAUNCHER = ("python3", "-u", "{launchers}/launch_compile.py")
"""The launcher of every compile container; see ``sandbox/image/launch_compile.py``."""
OUT = "{dir}/.build"
"""Where a compile stage writes what the run needs (names of files may not start with a dot,
so no file of the program is ever there)."""


@dataclass(frozen=True)
class Examples:
    """Programs the editor offers for a language: a hello world, one that reads input, and
    one that draws a plot (for languages that can)."""

    hello: str
    input: str
    plot: str | None = None


@dataclass(frozen=True)
class LimitOverrides:
    """Limits one language needs other than the configured defaults (None keeps those)."""

    memory_bytes: int | None = None
    pids: int | None = None
    wall_time: float | None = None

    def apply(self, limits: Limits) -> Limits:
        changes = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return dataclasses.replace(limits, **changes) if changes else limits

    def json(self) -> dict[str, int | float]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


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
    examples: Examples
    monaco: str
    """The editor's (Monaco's) language id for syntax highlighting."""
    compile: tuple[str, ...] | None = None
    packages: tuple[str, ...] = ()
    """Libraries installed beyond the standard library; the languages endpoint lists them."""
    compile_stage: tuple[str, ...] | None = None
    """The compile command, run in a compile container of its own before ``run``."""
    compile_limits: LimitOverrides = LimitOverrides()
    """Changes to the compile limits (``EXECSTREAM_COMPILE_*``) for this language."""
    run_limits: LimitOverrides = LimitOverrides()
    """Changes to the run limits (``EXECSTREAM_*``) for this language."""
    memory_error: str | None = None
    """What the runtime writes to stderr when the program's memory ran out inside the
    container's limit (a JVM's heap): a run that says it and fails ends as memory_limit."""
    preload_for: str | None = None
    """A pattern of programs (any of their files) slow to start because of what they import:
    with preloading on, they get a warm container whose launcher imported it ahead."""
    preloaded: bool = False
    """This is the kind of warm container that has imported ahead (see ``preloading``)."""

    @property
    def compiled(self) -> bool:
        return self.compile is not None or self.compile_stage is not None

    def entry_name(self, code: str) -> str:
        """The entry file's name: ``file_name``, with ``{class}`` filled from the code."""
        return self.file_name.format(**{"class": main_class(code)})

    def file(self, folder: str, code: str = "") -> str:
        return f"{folder}/{self.entry_name(code)}"

    @property
    def sandbox(self) -> tuple[object, ...]:
        """What makes a warm container fit this language's run: languages that share it
        (the launcher, and the limits) share warm containers."""
        return (self.launcher, self.run_limits, self.preloaded)

    @property
    def lane(self) -> str:
        """The name of its kind of warm container, for statistics."""
        return f"{self.id}-preloaded" if self.preloaded else self.id


def compiler(language: Language) -> Language:
    """The compile container of ``language``'s compile stage, as the pool and the backends
    see containers: a "language" whose launcher is ``COMPILE_LAUNCHER`` and whose limits
    are the compile limits, with the language's ``compile_limits`` on top."""
    return dataclasses.replace(COMPILER, run_limits=language.compile_limits)


def preloading(language: Language) -> Language:
    """The warm containers of ``language`` whose launcher imported ahead what
    ``preload_for`` programs use (launch.py, EXECSTREAM_PRELOAD)."""
    return dataclasses.replace(language, preloaded=True)


def wants_preload(language: Language, code: str, files: Sequence[SourceFile] = ()) -> bool:
    """Whether a program would start sooner in a ``preloading`` container."""
    if language.preload_for is None:
        return False
    pattern = re.compile(language.preload_for, re.MULTILINE)
    return any(pattern.search(text) for text in (code, *(f.content for f in files)))


def is_compiler(language: Language) -> bool:
    return language.launcher == COMPILE_LAUNCHER


_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_PUBLIC_CLASS = re.compile(r"\bpublic\s+(?:(?:final|abstract|strictfp)\s+)*class\s+(\w+)")
_CLASS = re.compile(r"\bclass\s+(\w+)")


def main_class(code: str) -> str:
    """Java's entry class: the first ``public class`` of the entry file; failing that, its
    first class; ``Main`` when it declares none (javac then says what is wrong)."""
    text = _COMMENT.sub(" ", code)
    found = _PUBLIC_CLASS.search(text) or _CLASS.search(text)
    return found.group(1) if found else "Main"


_NODE_LAUNCHER = ("node", "{launchers}/launch.js")
_EXEC_LAUNCHER = ("python3", "{launchers}/launch_exec.py")
"""Writes the files, arms init's deadline and execs ``run``: for interpreters that start fast,
and for the run of a compiled program."""
# The JVM's start-up dominates a small program at half a CPU: one compiler tier, the serial
# collector and the class-data archive shorten it. The heap gets three quarters of the
# container, the rest is the JVM's own: a memory hog then ends with Java's own
# OutOfMemoryError (and its stack trace), which ``memory_error`` makes a memory_limit.
_JVM_FLAGS = (
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
    "-XX:MaxRAMPercentage=75",
)
# javac also gets its class-data archive, made at image build (Dockerfile.executor).
_JAVAC_FLAGS = (
    *(f"-J{flag}" for flag in _JVM_FLAGS[:3]),
    "-J-XX:SharedArchiveFile={launchers}/javac.jsa",
)

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
            monaco="python",
            packages=("numpy", "matplotlib", "pandas"),
            # What the launcher preloads (launch.py): pyplot, and numpy with it.
            preload_for=r"^\s*(?:import|from)\s[^\n]*\b(?:matplotlib|pylab)\b",
            examples=Examples(
                hello='print("Hello, world!")\n',
                input='name = input("What is your name? ")\nprint(f"Hello, {name}!")\n',
                plot=(
                    "import matplotlib.pyplot as plt\n"
                    "import numpy as np\n\n"
                    "x = np.linspace(0, 2 * np.pi, 100)\n"
                    'plt.plot(x, np.sin(x), label="sin")\n'
                    'plt.plot(x, np.cos(x), label="cos")\n'
                    "plt.legend()\n"
                    "plt.show()\n"
                ),
            ),
        ),
        Language(
            id="javascript",
            name="JavaScript (Node.js)",
            version="18",
            extension=".js",
            file_name="main.js",
            launcher=_NODE_LAUNCHER,
            run=("node", "{dir}/main.js"),
            monaco="javascript",
            examples=Examples(
                hello='const greet = (name) => `Hello, ${name}!`;\nconsole.log(greet("world"));\n',
                input=(
                    'const readline = require("readline");\n'
                    "const rl = readline.createInterface({ input: process.stdin });\n"
                    'process.stdout.write("What is your name? ");\n'
                    'rl.once("line", (name) => {\n'
                    "  console.log(`Hello, ${name}!`);\n"
                    "  rl.close();\n"
                    "  process.stdin.destroy(); // no more input wanted: Node.js may end now\n"
                    "});\n"
                ),
            ),
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
                "--bundle",
                "--log-level=warning",
            ),
            run=("node", "--enable-source-maps", "{dir}/main.js"),
            monaco="typescript",
            examples=Examples(
                hello=(
                    "function greet(name: string): string {\n"
                    "  return `Hello, ${name}!`;\n"
                    "}\n\n"
                    'console.log(greet("world"));\n'
                ),
                input=(
                    'import * as readline from "readline";\n\n'
                    "const rl = readline.createInterface({ input: process.stdin });\n"
                    'process.stdout.write("What is your name? ");\n'
                    'rl.once("line", (name: string) => {\n'
                    "  console.log(`Hello, ${name}!`);\n"
                    "  rl.close();\n"
                    "  process.stdin.destroy(); // no more input wanted: Node.js may end now\n"
                    "});\n"
                ),
            ),
        ),
        Language(
            id="ruby",
            name="Ruby",
            version="3.1",
            extension=".rb",
            file_name="main.rb",
            # In-process: `ruby` loading RubyGems takes ~150 ms at half a CPU.
            launcher=("ruby", "{launchers}/launch.rb"),
            run=("ruby", "{dir}/main.rb"),
            monaco="ruby",
            examples=Examples(
                hello='def greet(name)\n  "Hello, #{name}!"\nend\n\nputs greet("world")\n',
                input=(
                    'print "What is your name? "\nname = gets.to_s.chomp\nputs "Hello, #{name}!"\n'
                ),
            ),
        ),
        Language(
            id="bash",
            name="Bash",
            version="5.2",
            extension=".sh",
            file_name="main.sh",
            # Bash starts in a few ms: the generic launcher execs it.
            launcher=_EXEC_LAUNCHER,
            run=("bash", "{dir}/main.sh"),
            monaco="shell",
            examples=Examples(
                hello='greet() {\n  echo "Hello, $1!"\n}\n\ngreet world\n',
                input=('printf "What is your name? "\nread -r name\necho "Hello, $name!"\n'),
            ),
        ),
        Language(
            id="php",
            name="PHP",
            version="8.2",
            extension=".php",
            file_name="main.php",
            # In-process: `php` loading its extensions takes ~100 ms at half a CPU.
            launcher=("php", "{launchers}/launch.php"),
            run=("php", "{dir}/main.php"),
            monaco="php",
            examples=Examples(
                hello=(
                    "<?php\n\n"
                    "function greet(string $name): string\n"
                    "{\n"
                    '    return "Hello, $name!";\n'
                    "}\n\n"
                    'echo greet("world"), "\\n";\n'
                ),
                input=(
                    "<?php\n\n"
                    'echo "What is your name? ";\n'
                    "$name = trim((string) fgets(STDIN));\n"
                    'echo "Hello, $name!\\n";\n'
                ),
            ),
        ),
        Language(
            id="lua",
            name="Lua",
            version="5.4",
            extension=".lua",
            file_name="main.lua",
            # Lua starts in a few ms: the generic launcher execs it.
            launcher=_EXEC_LAUNCHER,
            # C stdio buffers a pipe fully: unbuffered, output streams as it is written
            # (what `python3 -u` does for Python).
            run=("lua5.4", "-e", "io.stdout:setvbuf('no')", "{dir}/main.lua"),
            monaco="lua",
            examples=Examples(
                hello=(
                    "local function greet(name)\n"
                    '  return "Hello, " .. name .. "!"\n'
                    "end\n\n"
                    'print(greet("world"))\n'
                ),
                input=(
                    'io.write("What is your name? ")\n'
                    'local name = io.read("l") or ""\n'
                    'print("Hello, " .. name .. "!")\n'
                ),
            ),
        ),
        # Compiled languages: a compile stage in a container of its own, then the run ----
        Language(
            id="c",
            name="C",
            version="gcc 12",
            extension=".c",
            file_name="main.c",
            launcher=_EXEC_LAUNCHER,
            compile_stage=("gcc", "-std=c17", "-pipe", "-o", f"{OUT}/main", "{sources}", "-lm"),
            run=("{dir}/main",),
            monaco="c",
            examples=Examples(
                hello='#include <stdio.h>\n\nint main(void) {\n    printf("Hello, world!\\n");\n'
                "    return 0;\n}\n",
                input=(
                    "#include <stdio.h>\n\n"
                    "int main(void) {\n"
                    "    char name[100];\n"
                    '    printf("What is your name? ");\n'
                    "    fflush(stdout);\n"
                    '    if (scanf("%99s", name) == 1)\n'
                    '        printf("Hello, %s!\\n", name);\n'
                    "    return 0;\n"
                    "}\n"
                ),
            ),
        ),
        Language(
            id="cpp",
            name="C++",
            version="g++ 12",
            extension=".cpp",
            file_name="main.cpp",
            launcher=_EXEC_LAUNCHER,
            compile_stage=("g++", "-std=c++17", "-pipe", "-o", f"{OUT}/main", "{sources}", "-lm"),
            run=("{dir}/main",),
            monaco="cpp",
            examples=Examples(
                hello='#include <iostream>\n\nint main() {\n    std::cout << "Hello, world!"'
                " << std::endl;\n    return 0;\n}\n",
                input=(
                    "#include <iostream>\n#include <string>\n\n"
                    "int main() {\n"
                    "    std::string name;\n"
                    '    std::cout << "What is your name? " << std::flush;\n'
                    "    std::getline(std::cin, name);\n"
                    '    std::cout << "Hello, " << name << "!" << std::endl;\n'
                    "    return 0;\n"
                    "}\n"
                ),
            ),
        ),
        Language(
            id="java",
            name="Java",
            version="17",
            extension=".java",
            file_name="{class}.java",
            launcher=_EXEC_LAUNCHER,
            compile_stage=("javac", *_JAVAC_FLAGS, "-encoding", "UTF-8", "-d", OUT, "{sources}"),
            run=("java", *_JVM_FLAGS, "-cp", "{dir}", "{class}"),
            run_limits=LimitOverrides(pids=128),
            memory_error="java.lang.OutOfMemoryError",
            monaco="java",
            examples=Examples(
                hello=(
                    "public class Main {\n"
                    "    public static void main(String[] args) {\n"
                    '        System.out.println("Hello, world!");\n'
                    "    }\n"
                    "}\n"
                ),
                input=(
                    "import java.util.Scanner;\n\n"
                    "public class Main {\n"
                    "    public static void main(String[] args) {\n"
                    "        Scanner in = new Scanner(System.in);\n"
                    '        System.out.print("What is your name? ");\n'
                    "        System.out.flush();\n"
                    "        String name = in.nextLine();\n"
                    '        System.out.println("Hello, " + name + "!");\n'
                    "    }\n"
                    "}\n"
                ),
            ),
        ),
        Language(
            id="go",
            name="Go",
            version="1.19",
            extension=".go",
            file_name="main.go",
            launcher=_EXEC_LAUNCHER,
            compile_stage=("go", "build", "-o", f"{OUT}/main", "{sources}"),
            run=("{dir}/main",),
            monaco="go",
            examples=Examples(
                hello='package main\n\nimport "fmt"\n\nfunc main() {\n'
                '\tfmt.Println("Hello, world!")\n}\n',
                input=(
                    'package main\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"os"\n\t"strings"\n)\n\n'
                    "func main() {\n"
                    '\tfmt.Print("What is your name? ")\n'
                    "\tname, _ := bufio.NewReader(os.Stdin).ReadString('\\n')\n"
                    '\tfmt.Printf("Hello, %s!\\n", strings.TrimSpace(name))\n'
                    "}\n"
                ),
            ),
        ),
        Language(
            id="rust",
            name="Rust",
            version="1.63",
            extension=".rs",
            file_name="main.rs",
            launcher=_EXEC_LAUNCHER,
            # Modules (``mod util;``) are found by rustc beside the entry file.
            compile_stage=(
                "rustc",
                "--edition=2021",
                "-C",
                "opt-level=0",
                "-C",
                "strip=symbols",
                "-o",
                f"{OUT}/main",
                "{dir}/main.rs",
            ),
            run=("{dir}/main",),
            monaco="rust",
            examples=Examples(
                hello='fn main() {\n    println!("Hello, world!");\n}\n',
                input=(
                    "use std::io::{self, Write};\n\n"
                    "fn main() {\n"
                    '    print!("What is your name? ");\n'
                    "    io::stdout().flush().unwrap();\n"
                    "    let mut name = String::new();\n"
                    "    io::stdin().read_line(&mut name).unwrap();\n"
                    '    println!("Hello, {}!", name.trim());\n'
                    "}\n"
                ),
            ),
        ),
    )
}


COMPILER = Language(
    id="compiler",
    name="Compile stage",
    version="",
    extension="",
    file_name="",
    launcher=COMPILE_LAUNCHER,
    run=(),
    examples=Examples(hello="", input=""),
    monaco="plaintext",
)
"""Not a language: the compile containers' entry in the pool (see ``compiler``)."""


def sandboxes(preload: bool = False) -> list[Language]:
    """One language per kind of warm container: every language's run, the compile
    containers of the compiled ones, and with ``preload`` the preloading ones."""
    kinds: dict[tuple[object, ...], Language] = {}
    for language in LANGUAGES.values():
        kinds.setdefault(language.sandbox, language)
        if language.compile_stage is not None:
            kinds.setdefault(compiler(language).sandbox, compiler(language))
        if preload and language.preload_for is not None:
            kinds.setdefault(preloading(language).sandbox, preloading(language))
    return list(kinds.values())


def get_language(language_id: str) -> Language:
    """Return the registered language, or raise ``UnknownLanguage`` naming the supported ones."""
    try:
        return LANGUAGES[language_id]
    except KeyError:
        raise UnknownLanguage(language_id, sorted(LANGUAGES)) from None
