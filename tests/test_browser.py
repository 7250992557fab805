"""The editor in a real browser: Debian's Chromium driven by Playwright, real server and engine."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.server import ServerProcess
from tests.test_pool_demand import running, until

pytestmark = [pytest.mark.docker, pytest.mark.browser]

CHROMIUM = os.environ.get("EXECSTREAM_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
RUN_TIMEOUT = 30_000  # ms: a cold container on a busy machine, plus the program


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    yield page
    await context.close()
    assert not errors, f"JavaScript or Content-Security-Policy errors on the page: {errors}"


async def sign_up(page: Page, server: ServerProcess, path: str = "/") -> str:
    username = f"s{uuid.uuid4().hex[:10]}"
    await page.goto(server.url + path)
    await page.fill("#signup-username", username)
    await page.fill("#signup-password", "student-password")
    await page.click("#signup-submit")
    await expect(page.locator("#username")).to_have_text(username)
    await expect(page.locator("#run")).to_be_enabled(timeout=RUN_TIMEOUT)
    return username


async def set_code(page: Page, language: str, code: str) -> None:
    await page.select_option("#language", language)
    await page.evaluate("code => monaco.editor.getEditors()[0].setValue(code)", code)


async def terminal_text(page: Page) -> str:
    return await page.locator("#terminal .xterm-rows").inner_text()


async def expect_terminal(page: Page, text: str) -> None:
    await expect(page.locator("#terminal .xterm-rows")).to_contain_text(text, timeout=RUN_TIMEOUT)


async def expect_status(page: Page, status: str) -> None:
    await expect(page.locator("#status")).to_have_attribute(
        "data-status", status, timeout=RUN_TIMEOUT
    )


async def test_a_student_session(page: Page, server: ServerProcess) -> None:
    await sign_up(page, server, "/projects/12/editor")

    # input(): the prompt appears, the student types into the output panel, the greeting follows.
    await set_code(page, "python", 'name = input("Name? ")\nprint(f"Hello, {name}!")\n')
    await page.click("#run")
    await expect_terminal(page, "Name? ")
    await page.click("#terminal")
    await page.keyboard.type("Ada")
    await page.keyboard.press("Enter")
    await expect_terminal(page, "Hello, Ada!")
    await expect_status(page, "success")
    await expect(page.locator("#status-exit")).to_contain_text("0")
    await expect(page.locator("#status-time")).not_to_be_empty()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "editor.png"))

    # Stop interrupts a runaway loop.
    await set_code(page, "python", "print('spinning', flush=True)\nwhile True:\n    pass\n")
    await page.click("#run")
    await expect_terminal(page, "spinning")
    await page.click("#stop")
    await expect_status(page, "killed")
    await expect(page.locator("#status-state")).to_have_text("Stopped")

    # An output flood is cut at 10 KB, and the page says so.
    await set_code(page, "javascript", "for (;;) console.log('flood '.repeat(10));\n")
    await page.click("#run")
    await expect_status(page, "output_limit")
    await expect(page.locator("#status-truncated")).to_be_visible()
    await expect(page.locator("#status-truncated")).to_contain_text("10 KB")

    # After a reload the student is still signed in and finds the runs in the history.
    await page.reload()
    items = page.locator("[data-testid=history-item]")
    await expect(items).to_have_count(3, timeout=RUN_TIMEOUT)
    statuses = [await item.get_attribute("data-status") for item in await items.all()]
    assert statuses == ["output_limit", "killed", "success"]

    # Opening the first run brings back its code and output.
    await items.nth(2).locator("[data-testid=history-open]").click()
    code = await page.evaluate("monaco.editor.getEditors()[0].getValue()")
    assert code.startswith('name = input("Name? ")')
    await expect_terminal(page, "Hello, Ada!")

    # Deleting one removes it.
    page.on("dialog", lambda dialog: dialog.accept())
    await items.nth(0).locator("[data-testid=history-delete]").click()
    await expect(items).to_have_count(2, timeout=RUN_TIMEOUT)


async def test_errors_from_the_server_are_shown(page: Page, server: ServerProcess) -> None:
    await sign_up(page, server)
    # End of input from the button: the program reads to EOF, then answers.
    await set_code(page, "python", "import sys\nprint(len(sys.stdin.read().split()), 'words')\n")
    await page.click("#run")
    await expect(page.locator("#eof")).to_be_enabled(timeout=RUN_TIMEOUT)
    await page.click("#terminal")
    await page.keyboard.type("one two")
    await page.keyboard.press("Enter")
    await page.keyboard.type("three")
    await page.click("#eof")
    await expect_terminal(page, "3 words")
    await expect_status(page, "success")

    await set_code(page, "python", "#" * 51_201)
    await page.click("#run")
    await expect(page.locator("#status")).to_contain_text("51200", timeout=RUN_TIMEOUT)
    await expect(page.locator("#status")).to_have_attribute("data-status", "not_started")
    await set_code(page, "typescript", "const n: number = 6 * 7;\nconsole.log(n);\n")
    await page.click("#run")
    await expect_status(page, "success")
    await expect_terminal(page, "42")


async def test_narrow_window_and_dark_mode(browser: Browser, server: ServerProcess) -> None:
    context = await browser.new_context(viewport={"width": 420, "height": 900}, color_scheme="dark")
    page = await context.new_page()
    try:
        await sign_up(page, server)
        await set_code(page, "python", "print('small screen')\n")
        await page.locator("#editor").click()
        await page.keyboard.press("Control+Enter")
        await expect_terminal(page, "small screen")
        await expect_status(page, "success")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 420, "the page must not scroll sideways in a narrow window"
        await page.screenshot(path=str(ARTIFACTS / "editor-narrow-dark.png"), full_page=True)
    finally:
        await context.close()


async def test_a_lost_connection_is_explained_and_the_next_run_reconnects(
    page: Page, tmp_path: Path
) -> None:
    server = ServerProcess(tmp_path).start()
    try:
        await sign_up(page, server)
        await set_code(page, "python", "print('before')\n")
        await page.click("#run")
        await expect_status(page, "success")
        server.stop()  # the server goes away under the open page
        await expect(page.locator("#message")).to_contain_text(
            "reconnect when you run code again", timeout=RUN_TIMEOUT
        )
        await expect(page.locator("#connection")).to_have_attribute("data-state", "closed")
        server.start()  # back on the same port, same database and token secret
        await set_code(page, "python", "print('after')\n")
        await page.click("#run")
        await expect_terminal(page, "after")
        await expect_status(page, "success")
        await expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    finally:
        server.stop()


async def paste(page: Page, text: str) -> None:
    """Paste ``text`` into the output panel, as Ctrl+V would."""
    await page.evaluate(
        """text => {
            const data = new DataTransfer();
            data.setData('text/plain', text);
            const init = {clipboardData: data, bubbles: true, cancelable: true};
            document.querySelector('#terminal textarea').dispatchEvent(
                new ClipboardEvent('paste', init));
        }""",
        text,
    )


async def test_limits_come_from_the_server_and_a_large_paste_arrives_whole(
    page: Page, tmp_path: Path
) -> None:
    server = ServerProcess(tmp_path, EXECSTREAM_OUTPUT_BYTES="2048").start()
    try:
        username = await sign_up(page, server)

        # The cut note names the server's cap (2 KB here), not a number the page made up.
        await set_code(page, "python", "while True:\n    print('flood ' * 10)\n")
        await page.click("#run")
        await expect_status(page, "output_limit")
        await expect(page.locator("#status-truncated")).to_have_text("Output was cut at 2 KB")
        await expect_terminal(page, "[Output was cut at 2 KB]")

        # A paste of 600 KB, more than the server's window of 256 KB, reaches the program whole.
        text = "".join(f"line {n:05} " + "x" * 89 + "\n" for n in range(6000))
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        count = (
            "import hashlib, sys, time\ntime.sleep(2)  # not reading: the input must wait\n"
            "data = sys.stdin.read()\n"
            "print(len(data), data.count('\\n'), hashlib.sha256(data.encode()).hexdigest()[:16])\n"
        )
        await set_code(page, "python", count)
        await page.click("#run")
        await expect(page.locator("#status")).to_have_attribute(
            "data-state", "running", timeout=RUN_TIMEOUT
        )
        await paste(page, text)
        await page.click("#eof")
        await expect_terminal(page, f"{len(text)} 6000 {digest}")
        await expect_status(page, "success")
        await page.screenshot(path=str(ARTIFACTS / "editor-paste.png"))

        # A run cut short by a server crash is stored as `interrupted`: the page says so.
        with sqlite3.connect(tmp_path / "execstream.db") as db:
            db.execute(
                "INSERT INTO code_executions (user_id, language, code, output, status,"
                " execution_time, output_truncated, created_at)"
                " SELECT user_id, language, 'print(\"half\")', 'half', 'interrupted', 1.5, 0,"
                " created_at FROM code_executions"
                " WHERE user_id = (SELECT id FROM users WHERE username = ?)"
                " ORDER BY id DESC LIMIT 1",
                (username,),
            )
        await page.click("#history-refresh")
        interrupted = page.locator("[data-testid=history-item][data-status=interrupted]")
        await expect(interrupted.locator("[data-testid=history-badge]")).to_have_text(
            "Interrupted", timeout=RUN_TIMEOUT
        )
        await interrupted.locator("[data-testid=history-open]").click()
        await expect(page.locator("#status-state")).to_have_text("Interrupted")
        await expect_terminal(page, "The server stopped while this program ran")
        await page.screenshot(path=str(ARTIFACTS / "editor-interrupted.png"))
    finally:
        server.stop()


async def test_a_deleted_account_is_sent_back_to_sign_in(page: Page, server: ServerProcess) -> None:
    username = await sign_up(page, server)
    await set_code(page, "python", "print('once')\n")
    await page.click("#run")
    await expect_status(page, "success")
    # The page reloads its history after a run: let it, or that request (refused once the
    # account is gone) would send the page to sign-in before the next run is tried.
    await expect(page.locator("[data-testid=history-item]")).to_have_count(1)
    with sqlite3.connect(server.data_dir / "execstream.db") as db:
        db.execute("DELETE FROM users WHERE username = ?", (username,))
    # The socket is still open, but the next run is refused: the token's user is gone.
    await set_code(page, "python", "print('twice')\n")
    await page.click("#run")
    await expect(page.locator("#auth-view")).to_be_visible(timeout=RUN_TIMEOUT)
    await expect(page.locator("#message")).to_contain_text("Your session has ended")
    with sqlite3.connect(server.data_dir / "execstream.db") as db:
        ran = db.execute("SELECT count(*) FROM code_executions WHERE code LIKE '%twice%'")
        assert ran.fetchone() == (0,), "nothing may run for a deleted account"


async def test_a_queued_run_says_how_many_are_ahead(page: Page, tmp_path: Path) -> None:
    """Every slot is taken (one here, by another user's long run): the student's run waits,
    the status says so, Stop takes it out of the line, and the next run starts once the
    slot is free."""
    from tests.test_ws import next_frame, open_socket, run

    server = ServerProcess(tmp_path, EXECSTREAM_MAX_RUNS="1").start()
    try:
        await sign_up(page, server)
        _, other = server.new_user()
        holder = await open_socket(server, other)
        await run(holder, "print('holding', flush=True)\nimport time\ntime.sleep(60)")
        assert (await next_frame(holder, timeout=60))["type"] == "started"

        await set_code(page, "python", "print('my turn')\n")
        await page.click("#run")
        await expect(page.locator("#status-state")).to_have_text(
            "Waiting — 0 ahead of you", timeout=RUN_TIMEOUT
        )
        await expect(page.locator("#status")).to_have_attribute("data-state", "queued")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "editor-queued.png"))

        # Stop leaves the line: nothing ran.
        await page.click("#stop")
        await expect_terminal(page, "Cancelled before the program started.")
        await expect(page.locator("#run")).to_be_enabled()

        # Queued again; the other run ends, and this one starts and finishes.
        await page.click("#run")
        await expect(page.locator("#status")).to_have_attribute(
            "data-state", "queued", timeout=RUN_TIMEOUT
        )
        await holder.close()
        await expect_terminal(page, "my turn")
        await expect_status(page, "success")
    finally:
        server.stop()


@contextlib.contextmanager
def demand_only(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server whose warm containers are all there because an open editor asked for them."""
    env = {
        "EXECSTREAM_POOL_MIN": "0",
        "EXECSTREAM_POOL_SHRINK_SECONDS": "1",
        "EXECSTREAM_RUNTIME": "runc",
    }
    server = ServerProcess(tmp_path, **env).start()
    try:
        yield server
    finally:
        server.stop()


def counts(owner: str, **lanes: int) -> Callable[[], Awaitable[bool]]:
    """Whether each lane of the pool (``python_preloaded`` for ``python-preloaded``) holds
    that many running containers."""

    async def check() -> bool:
        for lane, expected in lanes.items():
            if len(await running(owner, lane.replace("_", "-"))) != expected:
                return False
        return True

    return check


async def test_the_editor_announces_its_language_and_a_warm_container_waits_for_it(
    page: Page, tmp_path: Path
) -> None:
    with demand_only(tmp_path) as server:
        owner = server.owner
        assert not await running(owner, "python")
        await sign_up(page, server)  # the editor opens on Python, before any run
        await until(counts(owner, python=1, javascript=0))
        await page.select_option("#language", "javascript")
        await until(counts(owner, python=0, javascript=1))
        await page.close()  # the session ends: nothing is kept for it
        await until(counts(owner, python=0, javascript=0))


async def test_plot_code_in_the_editor_gets_a_container_that_imported_matplotlib(
    page: Page, tmp_path: Path
) -> None:
    with demand_only(tmp_path) as server:
        owner = server.owner
        await sign_up(page, server)
        await until(counts(owner, python=1, python_preloaded=0))
        await page.click("#plot-example")  # imports matplotlib.pyplot
        await until(counts(owner, python=0, python_preloaded=1))
        await page.click("#reset-example")  # hello world again
        await until(counts(owner, python=1, python_preloaded=0))


async def test_a_two_file_program_in_tabs(page: Page, server: ServerProcess) -> None:
    await sign_up(page, server)
    await set_code(page, "python", "from util import twice\nprint('twice 21 is', twice(21))\n")
    tabs = page.get_by_test_id("file-tabs")
    await expect(tabs.get_by_role("tab")).to_have_text(["main.py"])
    page.once("dialog", lambda dialog: dialog.accept("util.py"))
    await page.get_by_test_id("file-add").click()
    await expect(tabs.get_by_role("tab")).to_have_text(["main.py", "util.py"])
    await expect(tabs.get_by_role("tab", name="util.py")).to_have_attribute("aria-selected", "true")
    # The editor now shows the new file.
    await page.evaluate(
        "code => monaco.editor.getEditors()[0].setValue(code)", "def twice(x):\n    return 2 * x\n"
    )
    await tabs.get_by_role("tab", name="main.py").click()
    assert "from util import" in await page.evaluate(
        "() => monaco.editor.getEditors()[0].getValue()"
    )
    await page.click("#run")
    await expect_terminal(page, "twice 21 is 42")
    await expect_status(page, "success")
    # The tabs survive a reload (saved like the draft).
    await page.reload()
    await expect(page.get_by_test_id("file-tabs").get_by_role("tab")).to_have_text(
        ["main.py", "util.py"], timeout=RUN_TIMEOUT
    )


async def test_a_c_compile_error_shows_in_the_compiler_pane(
    page: Page, server: ServerProcess
) -> None:
    await sign_up(page, server)
    await set_code(page, "c", '#include <stdio.h>\nint main(void) { puts("hi") return 0; }\n')
    await page.click("#run")
    await expect_status(page, "compile_error")
    pane = page.get_by_test_id("compiler-pane")
    await expect(pane).to_be_visible()
    await expect(page.get_by_test_id("compiler")).to_contain_text("error: expected")
    await expect(page.locator("#compiler-title")).to_have_text("Compile error")
    await expect(page.locator("#status-state")).to_have_text("Compile error")
    # The program's output panel holds no compiler message, only the run's summary.
    assert "error: expected" not in await terminal_text(page)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "compile-error.png"))

    # A good program then runs: the pane goes away, the output shows.
    await set_code(page, "c", '#include <stdio.h>\nint main(void) { puts("built"); return 0; }\n')
    await page.click("#run")
    await expect_terminal(page, "built")
    await expect_status(page, "success")
    await expect(pane).to_be_hidden()


async def test_each_language_has_its_highlighting_and_examples(
    page: Page, server: ServerProcess
) -> None:
    await sign_up(page, server)
    token = server.new_user()[1]
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        languages = (await client.get(f"{server.url}/api/v1/code/languages")).json()
    # Every language's Monaco mode is one Monaco knows (loaded from web/node_modules).
    known = await page.evaluate("monaco.languages.getLanguages().map(l => l.id)")
    assert {lang["monaco"] for lang in languages} <= set(known)

    # Switching to Ruby loads its hello world, highlighted as Ruby; running it prints.
    ruby = next(lang for lang in languages if lang["id"] == "ruby")
    await page.select_option("#language", "ruby")
    editor = "monaco.editor.getEditors()[0]"
    assert await page.evaluate(f"{editor}.getValue()") == ruby["examples"]["hello"]
    assert await page.evaluate(f"{editor}.getModel().getLanguageId()") == "ruby"
    kinds = await page.evaluate(
        f"monaco.editor.tokenize({editor}.getValue(), 'ruby').flat().map(t => t.type)"
    )
    # Ruby's grammar is loaded: `def` is a keyword, the greeting a string (not plain text).
    assert "keyword.def.ruby" in kinds
    assert any(kind.startswith("string") and kind.endswith(".ruby") for kind in kinds)
    await page.click("#run")
    await expect_terminal(page, "Hello, world!")
    await expect_status(page, "success")

    # The input example asks, the student answers in the output panel.
    await page.click("#input-example")
    assert await page.evaluate(f"{editor}.getValue()") == ruby["examples"]["input"]
    await page.click("#run")
    await expect_terminal(page, "What is your name? ")
    await page.click("#terminal")
    await page.keyboard.type("Ada")
    await page.keyboard.press("Enter")
    await expect_terminal(page, "Hello, Ada!")
    await expect_status(page, "success")


async def test_a_reload_brings_the_running_program_back(page: Page, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, EXECSTREAM_REATTACH_SECONDS="60").start()
    try:
        await sign_up(page, server)
        code = 'print("before", flush=True)\nname = input("Name? ")\nprint(f"Hello, {name}!")\n'
        await set_code(page, "python", code)
        await page.click("#run")
        await expect_terminal(page, "Name? ")
        await page.reload()
        # The program kept running: its output so far is replayed, and it still reads.
        await expect_terminal(page, "before")
        await expect_terminal(page, "Name? ")
        await page.click("#terminal")
        await page.keyboard.type("Ada")
        await page.keyboard.press("Enter")
        await expect_terminal(page, "Hello, Ada!")
        await expect_status(page, "success")
    finally:
        server.stop()


async def test_a_plot_appears_and_a_failing_test_case_shows_its_diff(
    page: Page, server: ServerProcess
) -> None:
    await sign_up(page, server)
    await set_code(
        page, "python", "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()\n"
    )
    await page.click("#run")
    await expect_status(page, "success")
    plot = page.locator("[data-testid=plot]")
    await expect(plot).to_have_count(1)
    width = await plot.evaluate("img => img.complete && img.naturalWidth")
    assert width > 100  # a real PNG, decoded by the browser

    await set_code(page, "python", "n = int(input())\nprint(n * 2)\n")
    await page.click("#tests-panel summary")
    for name, stdin, expected in (("doubles", "2", "4"), ("wrong", "3", "7")):
        await page.click("#add-test")
        row = page.locator("[data-testid=test-row]").last
        await row.locator("[data-field=name]").fill(name)
        await row.locator("[data-field=stdin]").fill(stdin)
        await row.locator("[data-field=expected]").fill(expected)
    await page.click("#run-tests")
    results = page.locator("[data-testid=test-result]")
    await expect(results).to_have_count(2, timeout=RUN_TIMEOUT)
    await expect(results.nth(0)).to_have_attribute("data-passed", "true")
    await expect(results.nth(1)).to_have_attribute("data-passed", "false")
    diff = results.nth(1).locator("[data-testid=test-diff]")
    await expect(diff).to_contain_text("-7")
    await expect(diff).to_contain_text("+6")
    await expect(plot).to_have_count(0)  # a new run starts with a clean output
    await expect_status(page, "error")
    await expect(page.locator("[data-testid=test-summary]")).to_have_text("1/2 tests passed")


async def test_a_failing_test_shows_its_diff_and_a_plot_shows_in_the_output(
    page: Page, server: ServerProcess
) -> None:
    """A student checks a program against two test cases, then runs the plot example; both
    come back from history as they were shown."""
    await sign_up(page, server)
    await set_code(page, "python", "n = int(input())\nprint(n * 2)\n")
    await page.click("#tests-panel summary")
    for name, given, expected in (("doubles", "4", "8"), ("wrong", "3", "7")):
        await page.get_by_test_id("add-test").click()
        row = page.get_by_test_id("test-row").last
        await row.locator("[data-field=name]").fill(name)
        await row.locator("[data-field=stdin]").fill(given + "\n")
        await row.locator("[data-field=expected]").fill(expected + "\n")
    await page.get_by_test_id("run-tests").click()
    results = page.get_by_test_id("test-result")
    await expect(results).to_have_count(2, timeout=RUN_TIMEOUT * 2)
    await expect(results.nth(0)).to_have_attribute("data-passed", "true")
    await expect(results.nth(1)).to_have_attribute("data-passed", "false")
    await expect(results.nth(0).get_by_test_id("test-diff")).to_have_count(0)
    diff = results.nth(1).get_by_test_id("test-diff")
    await expect(diff).to_contain_text("-7")
    await expect(diff).to_contain_text("+6")
    await expect(page.get_by_test_id("test-summary")).to_have_text("1/2 tests passed")

    # The plot example: its figure shows under the text output, as an image.
    await page.get_by_test_id("plot-example").click()
    await page.click("#run")
    await expect_status(page, "success")
    plot = page.get_by_test_id("plot")
    await expect(plot).to_have_count(1)
    assert await plot.evaluate("img => img.complete && img.naturalWidth > 100")
    await expect(page.get_by_test_id("test-result")).to_have_count(0)  # a new run, new results
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "tests-and-plot.png"))

    # From history: the plot run brings its figure back, the test run its checklist and diff.
    items = page.locator("[data-testid=history-item]")
    await expect(items).to_have_count(2)
    await expect(items.nth(1)).to_contain_text("1/2 tests passed")
    await items.nth(1).locator("[data-testid=history-open]").click()
    await expect(page.get_by_test_id("plot")).to_have_count(0)
    await expect(page.get_by_test_id("test-result")).to_have_count(2)
    await expect(page.get_by_test_id("test-diff")).to_contain_text("+6")
    await items.nth(0).locator("[data-testid=history-open]").click()
    await expect(page.get_by_test_id("test-result")).to_have_count(0)
    await expect(page.get_by_test_id("plot")).to_have_count(1)
    assert await page.get_by_test_id("plot").evaluate("img => img.naturalWidth > 100")
