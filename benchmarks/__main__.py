"""
``python -m benchmarks WORKLOAD... [--clients ...]``: run benchmarks against the emulator.

Workloads: ``B1`` ``B2`` ``B3`` ``B4`` (``all`` is the four), ``smoke`` (a quick check of the
runner, written to a temporary directory), and ``report`` (rebuild ``docs/benchmarks.md`` from the
results already in ``benchmarks/results/``). ``chaos`` is not a timed benchmark but a reliability
run with every fault at once (``benchmarks/_chaos.py``, ``docs/reliability.md``). ``B5`` runs
several client processes on one account, with and without a Redis coordinator
(``benchmarks/multiprocess.py``; its own options follow it). Examples::

    python -m benchmarks all                          # the full suite, then the report
    python -m benchmarks B1 --clients aioqwenimage    # re-measure one client; report updated
    python -m benchmarks B2 --clients aioqwenimage --profile pyinstrument  # profile, not recorded
    python -m benchmarks B1 --clients aioqwenimage --out /tmp/try --aqi-poll '{"sweep_share": 0.1}'
    python -m benchmarks chaos --count 5000           # the reliability run
    python -m benchmarks B5                           # 1, 2, 4 processes x Redis or not
    python -m benchmarks B5 --processes 4 --modes coordinated --scale 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._report import write_report
from benchmarks._runner import run_workload
from benchmarks._variants import VARIANTS
from benchmarks._workloads import WORKLOADS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"
PLOTS = ROOT / "docs" / "benchmarks"


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "workloads",
        nargs="+",
        choices=[*WORKLOADS, "all", "report"],
        metavar="WORKLOAD",
        help=f"one or more of: {', '.join(WORKLOADS)}, all, report",
    )
    parser.add_argument(
        "--clients",
        default=",".join(VARIANTS),
        help=f"comma-separated client variants (default: all of {', '.join(VARIANTS)})",
    )
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument(
        "--no-report", action="store_true", help="do not rebuild docs/benchmarks.md"
    )
    parser.add_argument(
        "--aqi-poll",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="PollPolicy overrides for aioqwenimage, e.g. '{\"sweep_interval\": 0.1}' (recorded)",
    )
    parser.add_argument(
        "--profile",
        choices=("pyinstrument", "py-spy"),
        default=None,
        help="profile the client processes (results are not recorded)",
    )
    return parser.parse_args(argv)


def _smoke(clients: list[str], out: Path | None) -> int:
    """Run the smoke workload; 0 only when every variant ran and aioqwenimage finished cleanly."""
    with tempfile.TemporaryDirectory(prefix="aioqwenimage-smoke-") as tmp:
        directory = out or Path(tmp)
        document = run_workload(WORKLOADS["smoke"], clients, directory, log=_log)
        write_report(directory, directory / "benchmarks.md", directory / "plots")
        problems = []
        for client in clients:
            entry = document["clients"].get(client, {})
            if entry.get("status") != "ok":
                problems.append(f"{client}: status {entry.get('status')}")
            elif entry["succeeded"] == 0 or entry["unfinished"]:
                problems.append(
                    f"{client}: {entry['succeeded']} succeeded, {entry['unfinished']} unfinished"
                )
            elif client == "aioqwenimage" and (entry["errors"] or entry["duplicates"]):
                problems.append(
                    f"{client}: {entry['errors']} errors, {entry['duplicates']} duplicates"
                )
        if not (directory / "plots" / "smoke.png").exists():
            problems.append("no plot was written")
    if problems:
        _log("smoke FAILED: " + "; ".join(problems))
        return 1
    _log("smoke passed")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["chaos"]:
        from benchmarks._chaos import main as chaos

        return chaos(argv[1:])
    if argv[:1] == ["B5"]:
        from benchmarks.multiprocess import main as multiprocess

        return multiprocess(argv[1:])
    args = _parse(argv)
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = [c for c in clients if c not in VARIANTS]
    if unknown:
        _log(f"unknown clients: {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
        return 2
    names: list[str] = []
    for name in args.workloads:
        names += ["B1", "B2", "B3", "B4"] if name == "all" else [name]
    started = time.monotonic()
    status = 0
    out = args.out or RESULTS
    for name in names:
        if name == "report":
            continue
        if name == "smoke":
            status |= _smoke(clients, args.out)
            continue
        run_workload(
            WORKLOADS[name], clients, out, profile=args.profile, poll=args.aqi_poll, log=_log
        )
    if not args.profile and not args.no_report and any(n != "smoke" for n in names):
        plots = PLOTS if out == RESULTS else out / "plots"
        page = PAGE if out == RESULTS else out / "benchmarks.md"
        for target in write_report(out, page, plots):
            met = {True: "met", False: "NOT MET", None: "not measured"}[target["met"]]
            _log(f"target {met}: {target['target']} ({target['detail']})")
        _log(f"report written to {page}")
    _log(f"done in {time.monotonic() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
