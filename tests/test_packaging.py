"""The product wheel holds the portal and nothing of the development tools (emulators, demo seeding)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_the_portal_without_emulators_or_demo(tmp_path: Path) -> None:
    # Built from a copy, so the checkout gets no build/ folder; without build isolation pip needs no network.
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    for package in ("portal", "devtools"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--disable-pip-version-check"]
        + ["-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()

    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"portal"}
    assert "portal/seats/crm/amocrm.py" in names and "portal/billing/subscriptions.py" in names
    assert [n for n in names if "emulator" in n or "demo" in n.rsplit("/", 1)[-1] or "devtools" in n] == []
