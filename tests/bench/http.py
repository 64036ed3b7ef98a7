"""Serve an app with gunicorn (2 workers) and measure requests per second and latency percentiles."""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn(
    app_spec: str, env: dict[str, str], log_path: Path, workers: int = 2, extra: tuple[str, ...] = ()
) -> Iterator[str]:
    port = free_port()
    log = open(log_path, "w")  # noqa: SIM115 - kept open for the server's life
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            *extra,
            app_spec,
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # Workers import the whole portal (WeasyPrint included) before they answer: on a busy 2-core machine that
        # can take many seconds, during which the socket already accepts and a request simply times out.
        deadline = time.monotonic() + 120
        while True:
            try:
                requests.get(url + "/", timeout=5, allow_redirects=False)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        # A graceful stop first (workers finish their request); on a loaded machine that can take a while, so it gets
        # gunicorn's own graceful timeout before the arbiter is killed outright, rather than failing the test.
        proc.terminate()
        try:
            proc.wait(timeout=35)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@dataclass
class LoadResult:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def load(
    name: str, url: str, *, cookies: dict[str, str] | None = None, seconds: float = 5.0, threads: int = 4
) -> LoadResult:
    """Closed-loop load from `threads` clients for `seconds`; bounded in time, loopback only."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal errors
        s = requests.Session()
        # Set as the server set them (host and path), so the Set-Cookie of each answer replaces them as in a browser;
        # a plain update kept the sign-in cookie beside the server's newer one and sent it again on every request, so
        # each request was "the first page after signing in" (account chosen, over-limit dialog shown, cookie re-signed).
        for name, value in (cookies or {}).items():
            s.cookies.set(name, value, domain=urlsplit(url).hostname, path="/")
        local: list[float] = []
        bad = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            r = s.get(url, allow_redirects=False, timeout=10)
            local.append(time.perf_counter() - t0)
            if r.status_code != 200:
                bad += 1
        with lock:
            latencies.extend(local)
            errors += bad

    start = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1] if latencies else 0.0
    return LoadResult(name, len(latencies), elapsed, statistics.median(latencies) * 1000, p95 * 1000, errors)


def sign_in(url: str, phone: str, log_path: Path, session: requests.Session | None = None) -> dict[str, str]:
    """Sign in through the real forms; the SMS code is read from the console backend's output in the server log.
    `session`: the browser to sign in (it keeps its cookies as a browser does)."""
    s = session or requests.Session()
    page = s.get(url + "/login").text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    s.post(url + "/login", data={"csrf_token": token, "phone": phone}, allow_redirects=False)
    code = None
    for _ in range(50):
        found = re.findall(rf"SMS to {re.escape(phone)}: .*?(\d{{6}})", log_path.read_text())
        if found:
            code = found[-1]
            break
        time.sleep(0.1)
    assert code, "no SMS code in the server log"
    page = s.get(url + "/login/code").text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = s.post(url + "/login/code", data={"csrf_token": token, "code": code}, allow_redirects=False)
    assert r.status_code == 302, r.text[:500]
    return s.cookies.get_dict()
