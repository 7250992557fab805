"""The results as rows: each figure next to what it is compared with, and its target."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import balancer, burst, engines, languages

MB = 1_000_000  # RSS is reported in decimal megabytes, the stricter reading of "150 MB"
NAMES = {"python": "Python", "javascript": "JavaScript"}


@dataclass(frozen=True)
class Row:
    what: str
    ours: str
    baseline: str
    ratio: str
    target: str
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "met": self.met}


def times(x: float) -> str:
    return "—" if math.isnan(x) or math.isinf(x) else f"{x:.2f}x"


def divide(a: float, b: float) -> float:
    return a / b if b else math.nan


def rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for language, figures in results["first_output"].items():
        name = NAMES.get(language, language)
        warm, cold, raw = (
            figures["warm"]["first_output"],
            figures["cold"]["first_output"],
            figures["raw"],
        )
        speedup = divide(cold["p50_ms"], warm["p50_ms"])
        out.append(
            Row(
                f"{name} first output p50: warm pool vs pool off",
                f"{warm['p50_ms']:.1f} ms",
                f"cold {cold['p50_ms']:.1f} ms",
                f"{times(speedup)} (cold/warm)",
                "≤ 15 ms and ≥ 8x",
                warm["p50_ms"] <= 15 and speedup >= 8,
            )
        )
        out.append(
            Row(
                f"{name} first output p95: warm pool vs pool off",
                f"{warm['p95_ms']:.1f} ms",
                f"cold {cold['p95_ms']:.1f} ms",
                f"{times(divide(cold['p95_ms'], warm['p95_ms']))} (cold/warm)",
                "—",
                None,
            )
        )
        share = figures["raw_warm"]["first_byte"]["p50_ms"]
        out.append(
            Row(
                f"{name} warm first output p50 vs a raw started container "
                "(header written → first stdout byte)",
                f"{warm['p50_ms']:.1f} ms",
                f"raw {share:.1f} ms",
                f"{times(divide(warm['p50_ms'], share))} (ours/raw)",
                "—",
                None,
            )
        )
        total = raw["total"]["p50_ms"]
        out.append(
            Row(
                f"{name} cold first output p50 vs raw aiodocker create → attach → start → "
                "header → first byte",
                f"{cold['p50_ms']:.1f} ms",
                f"raw {total:.1f} ms",
                f"{times(divide(cold['p50_ms'], total))} (ours/raw)",
                "—",
                None,
            )
        )
    ours, raw_rate = results["throughput"]["ours"], results["throughput"]["raw"]
    share = divide(ours["runs_per_second"], raw_rate["runs_per_second"])
    out.append(
        Row(
            f"Sustained completed runs/s, {ours['clients']} clients x {ours['seconds']:.0f} s "
            "(warm pool)",
            f"{ours['runs_per_second']:.2f}/s",
            f"raw engine {raw_rate['runs_per_second']:.2f}/s",
            f"{times(share)} (ours/raw)",
            "≥ 0.8x raw",
            share >= 0.8,
        )
    )
    idle = results["idle_sessions"]
    out.append(
        Row(
            f"Server RSS with {idle['open']} idle WebSocket sessions",
            f"{idle['rss_open_bytes'] / MB:.1f} MB",
            f"before {idle['rss_before_bytes'] / MB:.1f} MB",
            f"+{idle['per_session_bytes'] / 1000:.1f} kB/session",
            "< 150 MB",
            idle["rss_open_bytes"] < 150 * MB and idle["open"] >= idle["wanted"],
        )
    )
    flood, hello = results["flood"]["run_to_exit"], results["flood"]["hello_run_to_exit"]
    out.append(
        Row(
            "Output flood (while True: print('x' * 100)) → exit (output_limit) p50, warm",
            f"{flood['p50_ms']:.1f} ms",
            f"print('hello') run → exit {hello['p50_ms']:.1f} ms",
            f"{times(divide(flood['p50_ms'], hello['p50_ms']))}",
            "—",
            None,
        )
    )
    login = results.get("login_flood")
    if login:
        during, after = login["largest_gap_during_flood"], login["largest_gap_after_flood"]
        out.append(
            Row(
                f"Largest gap between output frames (print every 50 ms) while "
                f"{login['logins']} wrong sign-ins arrive at once, worst of {login['rounds']}",
                f"{during['max_ms']:.1f} ms",
                f"as long without the flood {after['max_ms']:.1f} ms",
                f"{times(divide(during['max_ms'], after['max_ms']))}",
                f"≤ {login['target_ms']:.0f} ms",
                login["met"],
            )
        )
    return out


def markdown(results: dict[str, Any], table: list[Row]) -> str:
    machine, settings = results["machine"], results["settings"]
    lines = [
        f"# execstream bench, {machine['date']}",
        "",
        f"{machine['nproc']} x {machine['cpu_model']}, {machine['memory_bytes'] / 2**30:.1f} GiB, "
        f"kernel {machine['kernel']}, Docker {machine['docker_server_version']}, "
        f"commit {machine['git_commit']}, load average at start "
        f"{' '.join(map(str, machine['load_average_at_start']))}, at end "
        f"{' '.join(map(str, machine['load_average_at_end']))}.",
        "",
        f"First output: {settings['runs']} sequential runs per language and mode on one socket, "
        f"{settings['pause_s']} s pause between runs (no waiting for the pool to refill); warm "
        f"= EXECSTREAM_POOL_SIZE={settings['pool_size']}, cold = EXECSTREAM_POOL_SIZE=0. "
        f"Raw engine throughput: create → attach → start → launcher with print('hello') → "
        f"wait → remove, same container config.",
        "",
        "| what | ours | baseline / comparison | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in table:
        met = "—" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.what} | {row.ours} | {row.baseline} | {row.ratio} | {row.target} | {met} |"
        )
    lines += ["", *breakdown(results)]
    notes = failures(results)
    if notes:
        lines += ["", "Failures:", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def breakdown(results: dict[str, Any]) -> list[str]:
    """Where a warm run's first output spends its time, p50 in milliseconds."""
    lines = [
        "Where a warm first output goes (p50, ms; separate series, so parts need not add up):",
        "",
        "| language | server: run → started | server: started → first output "
        "| DockerBackend in-process: start() | DockerBackend in-process: first output "
        "| raw started container: header → first byte |",
        "|---|---|---|---|---|---|",
    ]
    for language, figures in results["first_output"].items():
        warm, backend = figures["warm"], figures["backend_warm"]
        cells = [
            warm["started"]["p50_ms"],
            warm["started_to_first_output"]["p50_ms"],
            backend["start"].get("p50_ms", math.nan),
            backend["first_output"].get("p50_ms", math.nan),
            figures["raw_warm"]["first_byte"].get("p50_ms", math.nan),
        ]
        name = NAMES.get(language, language)
        lines.append(f"| {name} | " + " | ".join(f"{cell:.1f}" for cell in cells) + " |")
    counts = [
        f"{NAMES.get(language, language)} {f['backend_warm']['warm_runs']}"
        f"/{f['backend_warm']['start'].get('n', 0)}"
        for language, f in results["first_output"].items()
    ]
    lines += ["", f"In-process runs that got a warm container: {', '.join(counts)}."]
    return lines


def failures(results: dict[str, Any]) -> list[str]:
    notes = []
    for language, figures in results["first_output"].items():
        for mode, figure in figures.items():
            if figure.get("failures"):
                notes.append(f"{language} {mode}: {len(figure['failures'])} failed runs")
    for kind in ("ours", "raw"):
        if results["throughput"][kind].get("errors"):
            count = len(results["throughput"][kind]["errors"])
            notes.append(f"throughput {kind}: {count} errors")
    if results["flood"].get("failures"):
        notes.append(f"flood: {len(results['flood']['failures'])} failed runs")
    if results["idle_sessions"].get("failures"):
        notes.append(f"idle sessions: {len(results['idle_sessions']['failures'])} not opened")
    return notes


def write(results: dict[str, Any], folder: Path) -> str:
    """Save ``latest.json`` and ``latest.md`` in ``folder``; returns the markdown."""
    table = rows(results)
    results = {**results, "rows": [row.as_dict() for row in table]}
    text = markdown(results, table)
    if "burst" in results:
        text += "\n" + burst.markdown(results["burst"])
    if "balancer" in results:
        text += "\n" + balancer.markdown(results["balancer"])
    if "languages" in results:
        text += "\n" + languages.markdown(results["languages"])
    if "engines" in results:
        text += "\n" + engines.markdown(results["engines"])
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in (
        ("latest.json", json.dumps(results, indent=2) + "\n"),
        ("latest.md", text),
    ):
        temporary = folder / f"{name}.tmp"
        temporary.write_text(content)
        temporary.replace(folder / name)
    return text
