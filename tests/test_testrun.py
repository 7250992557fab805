"""Test cases end to end: one program, a fresh container per test, results in order."""

from __future__ import annotations

import json

import pytest

from tests.server import ServerProcess
from tests.test_ws import frames_until_exit, next_frame, open_socket, run

pytestmark = pytest.mark.docker

DOUBLE = "n = int(input())\nprint(n * 2)\n"


def case(name: str, stdin: str, expected: str, **extra: object) -> dict[str, object]:
    return {"name": name, "stdin": stdin, "expected_stdout": expected, **extra}


async def test_each_test_gets_a_frame_in_order_then_one_exit(server: ServerProcess, user) -> None:
    tests = [
        case("one", "1\n", "2\n"),
        case("slow first", "21\n", "42"),
        case("wrong", "3\n", "7\n"),
        case("float", "5\n", "10.0000001", compare="float", tolerance=1e-3),
    ]
    async with await open_socket(server, user[1]) as ws:
        await run(ws, DOUBLE, tests=tests)
        frames = await frames_until_exit(ws, timeout=120)
    results = [f for f in frames if f["type"] == "test"]
    assert [r["name"] for r in results] == ["one", "slow first", "wrong", "float"]
    assert [r["passed"] for r in results] == [True, True, False, True]
    wrong = results[2]
    assert wrong["stdout"] == "6\n" and wrong["expected"] == "7\n"
    assert "-7" in wrong["diff"] and "+6" in wrong["diff"]
    assert results[0]["diff"] is None
    assert not [f for f in frames if f["type"] == "output"]
    exit_ = frames[-1]
    assert (exit_["tests_passed"], exit_["tests_total"]) == (3, 4)
    assert exit_["status"] == "error"
    assert isinstance(exit_["execution_id"], int)


async def test_a_crashing_program_fails_its_test_with_its_status(
    server: ServerProcess, user
) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "raise SystemExit(3)", tests=[case("t", "", "")])
        frames = await frames_until_exit(ws, timeout=60)
    (result,) = [f for f in frames if f["type"] == "test"]
    assert result["passed"] is False and result["status"] == "error"
    assert frames[-1]["tests_passed"] == 0 and frames[-1]["status"] == "error"


async def test_bad_test_cases_are_refused_naming_what_is_wrong(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, DOUBLE, tests=[case("t", "", "")] * 21)
        error = await next_frame(ws)
        assert error["type"] == "error" and error["code"] == "invalid_message"
        assert "tests" in error["message"]
        await run(ws, DOUBLE, tests=[case("t", "", "", compare="regex")])
        error = await next_frame(ws)
        assert error["code"] == "invalid_message" and "compare" in error["message"]
        await ws.send(
            json.dumps(
                {
                    "type": "run",
                    "language": "python",
                    "code": DOUBLE,
                    "tests": [case("big", "x" * 70_000, "")],
                }
            )
        )
        error = await next_frame(ws)
        assert error["type"] == "error"


async def test_a_stop_ends_the_tests_and_the_socket_runs_again(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "while True: pass", tests=[case(str(i), "", "") for i in range(4)])
        await ws.send(json.dumps({"type": "stdin", "data": "x"}))
        error = await next_frame(ws)
        assert error["code"] == "no_active_run"
        await ws.send(json.dumps({"type": "signal", "signal": "SIGINT"}))
        error = await next_frame(ws, timeout=30)
        assert error["code"] == "run_cancelled"
        await run(ws, "print('again')")
        frames = await frames_until_exit(ws, timeout=60)
    assert frames[-1]["status"] == "success"


def test_rest_execute_with_tests_answers_every_result_and_keeps_one_record(
    server: ServerProcess, user
) -> None:
    from tests.test_rest import api, execute

    with api(server, user[1]) as client:
        answer = execute(
            client, DOUBLE, tests=[case("ok", "4\n", "8"), case("no", "4\n", "9", compare="tokens")]
        )
        assert answer.status_code == 200
        body = answer.json()
        assert (body["tests_passed"], body["tests_total"], body["status"]) == (1, 2, "error")
        assert [t["passed"] for t in body["tests"]] == [True, False]
        assert "+8" in body["tests"][1]["diff"]
        record = client.get(f"/api/v1/code/history/{body['execution_id']}")
        assert record.status_code == 200
        stored = record.json()
        assert stored["output"] == "PASS ok (success)\nFAIL no (success)\n"
        # History keeps each test's result as the answer gave it, diff included.
        assert (stored["tests_passed"], stored["tests_total"]) == (1, 2)
        assert stored["tests"] == body["tests"]
        bad = execute(client, DOUBLE, tests=[])
        assert bad.status_code == 422 and "tests" in bad.text
