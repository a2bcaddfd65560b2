"""When a sweep's lines appear, from the command's start: the first line, the dry run's, Ray's
start, the first trial's start and its end; each spec run with and without the dry run
(`--no-dry-run`), alternating, as `launch.py sweep` processes of their own.

    python -m benchmarks.first_lines                     # the demo and both examples, 2 rounds
    python -m benchmarks.first_lines --rounds 3 --spec examples/wine/sweep.yaml

Prints one table row per run (seconds from the command's start) and the medians per spec and
arm; the dry run's own time is the one its line prints.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = ("spaces/digits_cnn.yaml", "examples/wine/sweep.yaml", "examples/diabetes/sweep.yaml")
# The marks taken from the output: the first line of all, then the first line matching each pattern.
MARKS = {"dry run": r"dry run passed in", "Ray started": r"Ray started in",
         "first trial started": r"trial +\d+ started", "first trial ended": r"trial +\d+ (COMPLETE|PRUNED|FAIL)"}


def timed_sweep(spec: str, dry_run: bool, out: Path) -> dict[str, float]:
    """Seconds from the command's start to each mark, and the dry run's own time."""
    command = [sys.executable, str(ROOT / "launch.py"), "sweep", spec, "--trials", "2", "--max-epochs", "1",
               "--out", str(out), *([] if dry_run else ["--no-dry-run"])]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: dict[str, float] = {}
    for line in process.stdout:
        now = time.monotonic() - started
        seen.setdefault("first line", now)
        for mark, pattern in MARKS.items():
            if mark not in seen and re.search(pattern, line):
                seen[mark] = now
        if "dry run passed in" in line:
            seen["dry run's own time"] = float(re.search(r"passed in ([\d.]+) s", line).group(1))
    process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}")
    seen["command"] = time.monotonic() - started
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", action="append", help="spec to run (repeatable; default: the demo and examples)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    columns = ["first line", "dry run's own time", "dry run", "Ray started", "first trial started",
               "first trial ended", "command"]
    rows: dict[tuple[str, bool], list[dict[str, float]]] = {}
    print("| spec | dry run | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(args.rounds):
            for spec in args.spec or SPECS:
                # Alternate which arm goes first, so neither always follows the other.
                for dry_run in ((True, False) if round_number % 2 == 0 else (False, True)):
                    out = Path(folder) / f"{round_number}-{Path(spec).parent.name}-{dry_run}"
                    seen = timed_sweep(spec, dry_run, out)
                    rows.setdefault((spec, dry_run), []).append(seen)
                    cells = [f"{seen[c]:.1f}" if c in seen else "-" for c in columns]
                    print(f"| {spec} | {'on' if dry_run else 'off'} | " + " | ".join(cells) + " |", flush=True)
    print("\nmedians:")
    for (spec, dry_run), runs in rows.items():
        medians = {c: statistics.median(r[c] for r in runs) for c in columns if all(c in r for r in runs)}
        print(f"  {spec} dry run {'on ' if dry_run else 'off'}: "
              + ", ".join(f"{c} {v:.1f} s" for c, v in medians.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
