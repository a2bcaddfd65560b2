"""Command line: parses arguments and calls into :mod:`search`; no logic of its own."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from search.spec import SpecError

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finesweep", description="Hyperparameter sweeps on Ray Tune + Optuna.")
    commands = parser.add_subparsers(dest="command", required=True)

    sweep = commands.add_parser("sweep", help="run the sweep a spec describes")
    sweep.add_argument("spec", help="YAML sweep spec, e.g. spaces/digits_cnn.yaml")
    sweep.add_argument("--trials", type=int, help="number of trials (overrides budget.trials)")
    sweep.add_argument("--max-epochs", type=int, help="epochs per trial (overrides budget.max_epochs)")
    sweep.add_argument("--seed", type=int, help="strategy seed; trial seeds derive from it")
    sweep.add_argument("--concurrency", type=int, help="trials at a time (overrides resources.concurrency)")
    sweep.add_argument("--storage", help="study database URL (overrides storage)")
    sweep.add_argument("--out", type=Path, help="run directory (default runs/<spec name>)")
    sweep.add_argument("--address", help="join the Ray cluster at HOST:PORT instead of a local Ray")
    sweep.add_argument("--resume", action="store_true",
                       help="continue the sweep in the run directory (after a crash, or with more --trials)")
    sweep.add_argument("--verbose", action="store_true", help="show Ray's and Lightning's own logs")

    resume = commands.add_parser("resume", help="continue the sweep of a run directory")
    resume.add_argument("run_dir", type=Path)
    resume.add_argument("--trials", type=int, help="new total number of trials (to extend a finished sweep)")
    resume.add_argument("--address", help="join the Ray cluster at HOST:PORT instead of a local Ray")
    resume.add_argument("--verbose", action="store_true", help="show Ray's and Lightning's own logs")

    export = commands.add_parser("export", help="(re)write best.yaml of a finished sweep")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--top-k", type=int, default=1, help="also write top/rank_NN.yaml for the best K")

    train = commands.add_parser("train", help="retrain an exported config; prints val and test metrics")
    train.add_argument("config", type=Path, help="an exported config, e.g. runs/digits_cnn/best.yaml")
    train.add_argument("--out", type=Path, help="where the retrained weights go (default: <config dir>/retrain)")

    board = commands.add_parser("tensorboard", help="TensorBoard over every trial of one or more sweeps")
    board.add_argument("run_dirs", type=Path, nargs="+")
    board.add_argument("--port", type=int, default=6006)
    board.add_argument("--host", default="127.0.0.1",
                       help="address to listen on; anything but loopback exposes your runs")
    return parser


def _overrides(args: argparse.Namespace) -> dict[tuple[str, ...], object]:
    pairs = {("budget", "trials"): args.trials, ("budget", "max_epochs"): args.max_epochs,
             ("strategy", "seed"): args.seed, ("resources", "concurrency"): args.concurrency,
             ("storage",): args.storage}
    return {path: value for path, value in pairs.items() if value is not None}


def _run(spec_path: Path | str, overrides: dict, run_dir: Path | None, args: argparse.Namespace,
         resume: bool) -> int:
    from search.spec import parse_spec
    from search.sweep import SweepError, default_run_dir, run_sweep

    spec = parse_spec(spec_path, overrides)
    try:
        result = run_sweep(spec, run_dir or default_run_dir(spec), address=args.address,
                           verbose=args.verbose, resume=resume)
    except SweepError as error:
        print(f"finesweep: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0 if result.best_trial is not None else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    return _run(args.spec, _overrides(args), args.out, args, args.resume)


def cmd_resume(args: argparse.Namespace) -> int:
    from search.sweep import SPEC_COPY

    overrides = {("budget", "trials"): args.trials} if args.trials is not None else {}
    return _run(args.run_dir / SPEC_COPY, overrides, args.run_dir, args, True)


def cmd_export(args: argparse.Namespace) -> int:
    from search.export import write_exports
    from search.spec import parse_spec
    from search.study import load_study, ranked_trials, storage_url
    from search.sweep import SPEC_COPY

    if args.top_k < 1:
        print("finesweep: --top-k must be at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    spec_path = args.run_dir / SPEC_COPY
    if not spec_path.exists():
        print(f"finesweep: {args.run_dir} is not a sweep run directory (no {SPEC_COPY})", file=sys.stderr)
        return EXIT_BAD_INPUT
    spec = parse_spec(spec_path)
    study = load_study(spec.name, storage_url(spec.storage, args.run_dir))
    paths = write_exports(spec, args.run_dir, ranked_trials(study, spec.mode), args.top_k)
    if not paths:
        print("finesweep: no COMPLETE trial to export", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from search.retrain import retrain

    retrain(args.config, args.out)
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    missing = [str(d) for d in args.run_dirs if not (d / "tensorboard").is_dir()]
    if missing:
        print(f"finesweep: no tensorboard/ folder in {', '.join(missing)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    spec = ",".join(f"{d.resolve().name}:{(d / 'tensorboard').resolve()}" for d in args.run_dirs)
    print(f"finesweep: TensorBoard on http://{args.host}:{args.port}/ (Ctrl-C stops it)")
    command = [sys.executable, "-m", "tensorboard.main", "--logdir_spec", spec,
               "--host", args.host, "--port", str(args.port)]
    return subprocess.call(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


COMMANDS = {"sweep": cmd_sweep, "resume": cmd_resume, "export": cmd_export, "train": cmd_train,
            "tensorboard": cmd_tensorboard}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SpecError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("finesweep: interrupted", file=sys.stderr)
        return 130
