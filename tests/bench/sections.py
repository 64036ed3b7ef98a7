"""The benchmark sections; each prints a Markdown table with its baseline and the ratio."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.bench.http import ROOT, gunicorn, load, sign_in


class Skip(Exception):
    pass


def table(headers: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def _flask(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )


def pages(tmp: Path) -> None:
    """Dashboard of the over-limit demo company and /plans vs a bare Flask page, gunicorn with 2 workers each."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
        "SECRET_KEY": "bench",
        "SMS_SEND_LIMIT_PER_PHONE": "1000 per minute",
    }
    _flask(env, "db", "upgrade")
    _flask(env, "seed-demo")
    rows = []
    with gunicorn("tests.bench.bare_app:app", env, tmp / "bare.log") as url:
        load("warm-up", url + "/", seconds=1)
        base = load("bare Flask page", url + "/")
    with gunicorn("wsgi:app", env, tmp / "portal.log") as url:
        cookies = sign_in(url, "+79990000001", tmp / "portal.log")
        load("warm-up", url + "/", cookies=cookies, seconds=1)
        dash = load("dashboard (over-limit company, owner)", url + "/", cookies=cookies)
        plans = load("/plans (owner)", url + "/plans", cookies=cookies)
        anon = load("/plans (visitor)", url + "/plans")
    for r in (base, dash, plans, anon):
        rows.append(
            [
                r.name,
                f"{r.rps:.0f}",
                f"{r.p50_ms:.1f}",
                f"{r.p95_ms:.1f}",
                str(r.errors),
                f"{base.rps / r.rps:.1f}×" if r is not base else "1.0×",
            ]
        )
    table(["page", "req/s", "p50 ms", "p95 ms", "non-200", "slower than bare"], rows)


def _timed(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


ALL: list[tuple[str, Callable[[Path], None]]] = [("pages", pages)]
