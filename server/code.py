"""The REST API of the replaced service: execute, history, languages."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from pydantic import BaseModel, Field
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import LANGUAGES, SandboxError, SourceFile
from server.errors import ApiError, from_sandbox
from server.http import json_body, validate
from server.protocol import MAX_TESTS, TestCaseModel
from server.runs import Admission, RunService, RunSpec
from server.services import services
from server.testrun import TestCase, TestResult, elapsed_since, result_json, run_tests, store
from storage import CodeExecution, CursorNotFound

MAX_PAGE = 100
# Ids, offsets and counts: SQLite's integers (and JavaScript's exact ones) go further, but no
# real value does; bounding them keeps absurd numbers out of the database driver.
MAX_INT = 2**31 - 1


class FileBody(BaseModel):
    name: str = Field(max_length=1000)
    content: str


class ExecuteRequest(BaseModel):
    code: str
    """The entry file."""
    files: list[FileBody] = Field(default_factory=list, max_length=1000)
    """The program's other files, beside the entry file (sandbox/files.py: the rules)."""
    language: str = Field(max_length=64)
    stdin: str | None = ""
    project_id: int | None = Field(default=None, ge=0, le=MAX_INT)
    save_history: bool = True
    timeout: float | None = Field(default=None, gt=0, le=86_400, allow_inf_nan=False)
    tests: list[TestCaseModel] | None = Field(default=None, min_length=1, max_length=MAX_TESTS)


class HistoryQuery(BaseModel):
    project_id: int | None = Field(default=None, ge=0, le=MAX_INT)
    limit: int = Field(default=50, ge=1, le=MAX_INT)
    offset: int = Field(default=0, ge=0, le=MAX_INT)
    cursor: int | None = Field(default=None, ge=1, le=MAX_INT)


class ExecutionPath(BaseModel):
    execution_id: int = Field(ge=1, le=MAX_INT)


@requires("authenticated", status_code=401)
async def execute(request: Request) -> Response:
    state = services(request)
    user = request.user
    body = await json_body(request, ExecuteRequest)
    spec = RunSpec(
        language=body.language,
        code=body.code,
        stdin=body.stdin or "",  # REST cannot type into a program: stdin is whole, then EOF
        timeout=body.timeout,
        project_id=body.project_id,
        save_history=body.save_history,
        files=tuple(SourceFile(f.name, f.content) for f in body.files),
    )
    if body.tests is not None:
        return await execute_tests(state.runs, user.id, spec, body.tests)
    try:
        admission = await admit_while_connected(request, state.runs, user.id, spec)
        execution = await state.runs.launch(admission)
    except SandboxError as exc:
        raise from_sandbox(exc) from None
    async for _ in execution.output():
        pass
    result, execution_id = await state.runs.finish(execution)
    return JSONResponse(
        {
            "output": "".join(execution.stdout) or None,
            "error": "".join(execution.stderr) or None,
            "execution_time": result.execution_time,
            "status": result.status.value,
            "exit_code": result.exit_code,
            "signal": result.signal,
            "execution_id": execution_id,
            "output_truncated": result.output_truncated,
            "compile_output": "".join(execution.compile_messages) or None,
            "compile_time": result.compile_time,
            "cpu_time": result.cpu_time,
            "memory_peak": result.memory_peak,
        }
    )


async def execute_tests(
    runs: RunService, user_id: int, spec: RunSpec, tests: list[TestCaseModel]
) -> Response:
    """The program against each test case; the answer holds every test's result."""
    cases = [TestCase(**test.model_dump()) for test in tests]
    start = time.monotonic()
    results: list[TestResult] = []
    try:
        async for result in run_tests(runs, user_id, spec, cases, runs.test_concurrency):
            results.append(result)
    except SandboxError as exc:
        raise from_sandbox(exc) from None
    took = elapsed_since(start)
    passed = sum(r.passed for r in results)
    return JSONResponse(
        {
            "status": "success" if passed == len(results) else "error",
            "execution_time": took,
            "execution_id": await store(runs, user_id, spec, results, took),
            "tests_passed": passed,
            "tests_total": len(results),
            "tests": [result_json(r) for r in results],
        }
    )


async def admit_while_connected(
    request: Request, runs: RunService, user_id: int, spec: RunSpec
) -> Admission:
    """Wait for the run's turn; a client that hangs up meanwhile leaves the queue."""
    admitting = asyncio.create_task(runs.admit(user_id, spec))
    hung_up = asyncio.create_task(_hung_up(request))
    try:
        await asyncio.wait({admitting, hung_up}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hung_up.cancel()
        if not admitting.done():
            admitting.cancel()  # it leaves the queue (or gives back a slot just granted)
    if admitting.done():
        return admitting.result()
    await asyncio.wait({admitting})
    # Nobody is there to read this (nginx's 499 "client closed request").
    raise ApiError(499, "client_closed", "the client hung up while its run waited")


async def _hung_up(request: Request) -> None:
    """Return once the client has hung up. The body was read whole, so the next message
    of the request is its disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@requires("authenticated", status_code=401)
async def history(request: Request) -> Response:
    state = services(request)
    user = request.user
    query = validate(HistoryQuery, dict(request.query_params))
    if query.cursor is not None and query.offset:
        raise ApiError(422, "invalid_request", "use either offset or cursor, not both")
    limit = min(query.limit, MAX_PAGE)
    try:
        records = await state.db.list_executions(
            user.id,
            project_id=query.project_id,
            limit=limit,
            offset=query.offset,
            before_id=query.cursor,
        )
    except CursorNotFound as exc:
        raise ApiError(400, exc.code, f"cursor: {exc.message}") from None
    headers = {}
    if len(records) == limit:
        headers["X-Next-Cursor"] = str(records[-1].id)
    return JSONResponse([record_json(r) for r in records], headers=headers)


@requires("authenticated", status_code=401)
async def history_item(request: Request) -> Response:
    state = services(request)
    user = request.user
    execution_id = _execution_id(request)
    record = await state.db.get_execution(user.id, execution_id)
    if record is None:
        raise ApiError(404, "not_found", "no such execution")
    images = await state.db.execution_images(user.id, execution_id) if record.image_count else []
    # One run's plots, at most its image caps (5 of 1 MB): only here, not in the list.
    shown = [{"mime": i.mime, "data": base64.b64encode(i.data).decode()} for i in images]
    return JSONResponse(record_json(record) | {"images": shown})


@requires("authenticated", status_code=401)
async def delete_history_item(request: Request) -> Response:
    state = services(request)
    user = request.user
    if not await state.db.delete_execution(user.id, _execution_id(request)):
        raise ApiError(404, "not_found", "no such execution")
    return Response(status_code=204)


@requires("authenticated", status_code=401)
async def languages(request: Request) -> Response:
    state = services(request)
    versions = state.backend.versions
    return JSONResponse(
        [
            {
                "id": lang.id,
                "name": lang.name,
                "version": versions.get(lang.id, lang.version),
                "extension": lang.extension,
                "monaco": lang.monaco,
                "examples": {
                    "hello": lang.examples.hello,
                    "input": lang.examples.input,
                    **({"plot": lang.examples.plot} if lang.examples.plot else {}),
                },
                "example": lang.examples.hello,
                "compiled": lang.compiled,
                "file_name": lang.file_name,
                "compile": list(lang.compile_stage or lang.compile or ()) or None,
                "run": list(lang.run),
                "limits": lang.run_limits.json(),
                "compile_limits": lang.compile_limits.json() if lang.compile_stage else None,
                "packages": list(lang.packages),
                "preload_for": lang.preload_for if state.backend.preload else None,
                "runtime": state.backend.runtime,
            }
            for lang in LANGUAGES.values()
        ]
    )


def _execution_id(request: Request) -> int:
    return validate(ExecutionPath, request.path_params).execution_id


def record_json(record: CodeExecution) -> dict[str, Any]:
    return {
        "id": record.id,
        "project_id": record.project_id,
        "language": record.language,
        "code": record.code,
        "stdin": record.stdin,
        "output": record.output,
        "error": record.error,
        "exit_code": record.exit_code,
        "signal": record.signal,
        "status": record.status,
        "execution_time": record.execution_time,
        "output_truncated": record.output_truncated,
        "files": record.files or [],
        "compile_output": record.compile_output,
        "compile_time": record.compile_time,
        "cpu_time": record.cpu_time,
        "memory_peak": record.memory_peak,
        "tests_passed": record.tests_passed,
        "tests_total": record.tests_total,
        "tests": record.tests,
        "image_count": record.image_count,
        "created_at": record.created_at.isoformat(),
    }


routes = [
    Route("/api/v1/code/execute", execute, methods=["POST"]),
    Route("/api/v1/code/history", history, methods=["GET"]),
    Route("/api/v1/code/history/{execution_id}", history_item, methods=["GET"]),
    Route("/api/v1/code/history/{execution_id}", delete_history_item, methods=["DELETE"]),
    Route("/api/v1/code/languages", languages, methods=["GET"]),
]
