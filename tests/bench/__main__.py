"""`make bench`: page throughput under gunicorn, document rendering, CRM reconciliation and statement import.

Every figure is printed next to a baseline measured in the same run on the same machine, with the same statistic
(median of N after a warm-up) on both sides; the ratio is the figure that means something on a shared 2-core
machine. The summary of the figures is written as JSON to BENCH_JSON (default bench.json, not committed).

Sections: `python -m tests.bench documents statement`, or BENCH_SECTIONS=documents,statement; all by default.
BENCH_DATABASE_URL (PostgreSQL) replaces the temporary SQLite file; its schema is dropped and created again.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import traceback
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
    return f"{platform.node()} · {os.cpu_count()} cores · {cpu} · Python {platform.python_version()}"


def main() -> int:
    only = set(sys.argv[1:]) | {s.strip() for s in os.environ.get("BENCH_SECTIONS", "").split(",") if s.strip()}
    unknown = only - {name for name, _ in sections.ALL}
    if unknown:
        print(f"unknown sections: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    commit = (
        os.environ.get("BENCH_GIT")
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    )
    print(f"# Benchmarks — {machine()}")
    print(f"git {commit}, database {sections.database_name()}")
    summary: dict[str, object] = {
        "git": commit,
        "machine": machine(),
        "database": sections.database_name(),
        "sections": [],
    }
    with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
        for name, fn in sections.ALL:
            if only and name not in only:
                continue
            print(f"\n## {name}\n")
            try:
                fn(Path(tmp))
                summary["sections"].append(name)  # type: ignore[union-attr]
            except sections.Skip as exc:
                print(f"(skipped: {exc})")
            except Exception:  # one broken section must not cost the others' figures
                traceback.print_exc()
                summary.setdefault("failed", []).append(name)  # type: ignore[union-attr]
    summary.update(sections.SUMMARY)
    out = Path(os.environ.get("BENCH_JSON") or ROOT / "bench.json")
    out.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    print(f"\nsummary written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
