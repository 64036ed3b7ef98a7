"""`make bench`: page throughput under gunicorn, document rendering, CRM reconciliation and statement import.

Every figure is printed next to a baseline measured in the same run on the same machine; the ratio is the figure
that means something on a shared 2-core machine. Results are appended to BENCHMARKS.md by hand from this output.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.bench import sections

ROOT = Path(__file__).resolve().parents[2]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{platform.node()} · {os.cpu_count()} cores · {cpu} · Python {platform.python_version()}"


def main() -> int:
    only = set(sys.argv[1:])
    print(f"# Benchmarks — {machine()}")
    print(
        f"git {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, cwd=ROOT).stdout.strip()}"
    )
    with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
        for name, fn in sections.ALL:
            if only and name not in only:
                continue
            print(f"\n## {name}\n")
            try:
                fn(Path(tmp))
            except sections.Skip as exc:
                print(f"(skipped: {exc})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
