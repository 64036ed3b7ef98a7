"""Rate limits hold across server processes: two gunicorn workers sharing Redis send one phone exactly its quota."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from tests.bench.http import ROOT, gunicorn

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
PHONE = "+79160004455"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture
def shared_redis() -> str:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.flushdb()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required under CI=true ({REDIS_URL}): {exc}")
        pytest.skip(f"needs Redis at {REDIS_URL} (TEST_REDIS_URL): {exc}")
    yield REDIS_URL
    client.flushdb()


def _ask_for_code(url: str) -> int:
    """A person asks for a code: their own browser session, the form's CSRF token, then the POST."""
    browser = requests.Session()
    page = browser.get(f"{url}/login", timeout=30).text
    token = CSRF_RE.search(page).group(1)  # type: ignore[union-attr]
    resp = browser.post(f"{url}/login", data={"phone": PHONE, "csrf_token": token}, allow_redirects=False, timeout=30)
    return resp.status_code


def test_two_workers_with_redis_storage_hold_the_per_phone_limit_exactly(tmp_path: Path, shared_redis: str) -> None:
    instance = tmp_path / "instance"
    env = {
        "INSTANCE_PATH": str(instance),
        "SECRET_KEY": "k" * 64,
        "RATELIMIT_STORAGE_URI": shared_redis,
        "SMS_SEND_LIMIT_PER_PHONE": "3 per 10 minutes",
        "SMS_SEND_LIMIT_PER_IP": "100 per hour",
        "CRM_BACKEND": "emulator",
        "CRM_EMULATOR_URL": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    log = tmp_path / "gunicorn.log"
    # --preload: the app is imported once and both workers are forked ready, so both take requests from the start.
    with gunicorn("wsgi:app", env, log, extra=("--preload",)) as url, ThreadPoolExecutor(max_workers=4) as pool:
        # Eight people at once, so that both workers take some: with per-process counters each would allow three.
        statuses = list(pool.map(lambda _: _ask_for_code(url), range(8)))
    sent = re.findall(rf"SMS to {re.escape(PHONE)}:", log.read_text())
    assert sorted(statuses) == [302, 302, 302, 429, 429, 429, 429, 429], statuses
    assert len(sent) == 3
