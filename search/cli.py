"""Command line: parses arguments and calls into :mod:`search`; no logic of its own. Each command
imports its own modules when it runs, so `--help` and `status` start fast: the views together would add
0.05 s to the 0.15 s Python takes to start and import this module, the sweep's modules 0.22 s (Optuna...)."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from finesweep.models.components import ComponentError
from finesweep.models.data_sources import MissingDataSource
from finesweep.search.run_dir import BEST_FILE, ROBUST_FILE, ROBUST_TABLE, SINGLE_BEST_FILE, SPEC_COPY
from finesweep.search.run_dir.files import RunFileError
from finesweep.search.signals import stop_on_ctrl_c
from finesweep.search.spec import SpecError, parse_spec
from finesweep.search.study import describe_storage
from finesweep.search.user_code import UserCodeTimeout, add_import_paths, demote_working_directory, time_limit
from finesweep.search.views.export import robust_choice, write_exports

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
    sweep.add_argument("--no-dry-run", dest="dry_run", action="store_false",
                       help="skip the dry run (one training and one validation batch in the driver before Ray)")

    resume = commands.add_parser("resume", help="continue the sweep of a run directory")
    resume.add_argument("run_dir", type=Path)
    resume.add_argument("--trials", type=int, help="new total number of trials (to extend a finished sweep)")
    resume.add_argument("--address", help="join the Ray cluster at HOST:PORT instead of a local Ray")
    resume.add_argument("--verbose", action="store_true", help="show Ray's and Lightning's own logs")
    resume.add_argument("--no-dry-run", dest="dry_run", action="store_false", help="skip the dry run")

    export = commands.add_parser("export", help="(re)write best.yaml of a finished sweep")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--top-k", type=int, default=1, help="also write top/rank_NN.yaml for the best K")
    export.add_argument("--select", help="several objectives: choose best.yaml by '{val_acc: max, subject_to: "
                        "{latency_ms: {max: 5}}}' instead of the spec's select: (default: the knee of the front)")
    export.add_argument("--reseed", type=int, metavar="N",
                        help="retrain each of the top K configs with N new seeds (through Ray) and export the "
                             "best mean as best.yaml; numbers in robust.yaml and robust.md")
    export.add_argument("--address", help="with --reseed: join the Ray cluster at HOST:PORT instead of a local Ray")

    train = commands.add_parser("train", help="retrain an exported config; prints val and test metrics")
    train.add_argument("config", type=Path, help="an exported config, e.g. runs/digits_cnn/best.yaml")
    train.add_argument("--out", type=Path, help="where the retrained weights go (default: <config dir>/retrain)")
    train.add_argument("--max-epochs", type=int, help="train this many epochs instead of the export's")
    train.add_argument("--seed", type=int, help="another seed than the export's (seed_everything)")
    train.add_argument("--workers", type=int, help="train on N Ray Train workers (default: the sweep's workers)")

    status = commands.add_parser("status", help="where a sweep stands: counts, best so far, top-k, failures "
                                                "(also while it runs)")
    status.add_argument("target", help="a run directory, or a study storage URL (sqlite:///..., postgresql://...)")
    status.add_argument("--study", help="study name (needed when the storage holds several)")
    status.add_argument("--top-k", type=int, default=5, help="rows of the top table")

    report = commands.add_parser("report", help="write report.html and PNG plots of a sweep")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--top-k", type=int, default=5, help="trials in the top table and the learning curves")
    report.add_argument("--out", type=Path, help="folder for report.html and report/ (default: the run directory)")

    ensemble = commands.add_parser("ensemble", help="average the top-k trials' predictions; ensemble vs best "
                                                    "single on validation and the held-out test split")
    ensemble.add_argument("target", type=Path, help="a run directory, or an ensemble.yaml to re-evaluate")
    ensemble.add_argument("--top-k", type=int, default=5, help="members: the best K trials")
    ensemble.add_argument("--outputs", choices=("auto", "logits", "probabilities", "regression"), default="auto",
                          help="what predict_step returns (auto: rows of non-negative values summing to 1 are "
                               "probabilities, other class scores logits, one value per example regression)")

    board = commands.add_parser("tensorboard", help="TensorBoard over every trial of one or more sweeps")
    board.add_argument("run_dirs", type=Path, nargs="+")
    board.add_argument("--port", type=int, default=6006)
    board.add_argument("--reload-interval", type=float, default=5.0,
                       help="seconds between TensorBoard's re-reads of the files (running trials show up then)")
    board.add_argument("--host", default="127.0.0.1",
                       help="address to listen on; anything but loopback exposes your runs")

    dashboard = commands.add_parser("dashboard", help="optuna-dashboard over a sweep's study (live while it runs)")
    dashboard.add_argument("target", help="a run directory, or a study storage URL (sqlite:///..., postgresql://...)")
    dashboard.add_argument("--port", type=int, default=8080)
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="address to listen on; anything but loopback exposes your studies")
    init = commands.add_parser("init", help="write a starting spec for your own LightningModule and DataModule")
    init.add_argument("model", help="class path of your LightningModule, e.g. mypkg.models.MyMLP")
    init.add_argument("--data", required=True, help="class path of your LightningDataModule")
    init.add_argument("--name", help="sweep name (default: the model class's name)")
    init.add_argument("--out", type=Path, help="write the spec here (default: print it)")

    commands.add_parser("tasks", help="list the built-in tasks (short names for model + data classes)")

    clean = commands.add_parser("clean", help="end the Ray processes a killed sweep of RUN_DIR left running")
    clean.add_argument("run_dir", type=Path)
    return parser


def cmd_init(args: argparse.Namespace) -> int:
    # This command's module only (module docstring): `--help` imports no command's modules.
    from finesweep.search.views.init import starting_spec
    # The spec will live in --out's folder and find the module from there, so look there too.
    add_import_paths(args.out.resolve().parent if args.out is not None else Path.cwd())
    try:
        text = starting_spec(args.model, args.data, args.name)
    except ComponentError as error:
        print(f"finesweep: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.out is None:
        print(text, end="")
        return 0
    if args.out.exists():
        print(f"finesweep: {args.out} exists; choose another --out", file=sys.stderr)
        return EXIT_BAD_INPUT
    args.out.write_text(text)
    launcher = Path(sys.argv[0]).resolve()
    command = f"python {launcher}" if launcher.name == "launch.py" else "finesweep"
    print(f"finesweep: wrote {args.out}; edit it, then: {command} sweep {args.out}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    # This command's module only (module docstring).
    from finesweep.search.views.init import task_table
    print(task_table())
    return 0


def _overrides(args: argparse.Namespace) -> dict[tuple[str, ...], object]:
    pairs = {("budget", "trials"): args.trials, ("budget", "max_epochs"): args.max_epochs,
             ("strategy", "seed"): args.seed, ("resources", "concurrency"): args.concurrency,
             ("storage",): args.storage}
    return {path: value for path, value in pairs.items() if value is not None}


def _run(spec_path: Path | str, overrides: dict, run_dir: Path | None, args: argparse.Namespace,
         resume: bool) -> int:
    # The sweep's modules bring Optuna, TensorBoard and numpy (and Ray when it starts): sweep and resume only.
    from finesweep.search.resume import ResumeRefused, check_before_resume
    from finesweep.search.sweep import SweepError, SweepStopped, default_run_dir, run_sweep
    try:
        if resume:  # The run's spec copy is checked against its study before anything is imported.
            check_before_resume(spec_path, run_dir)
    except ResumeRefused as error:
        print(f"finesweep: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    # Checking a spec imports the user's classes (torch, Lightning): seconds before anything else shows.
    print(f"finesweep: checking {spec_path}", flush=True)
    with time_limit("the spec's classes and data (importing your module, the DataModule, check_inputs)"):
        spec = parse_spec(spec_path, overrides)
    try:
        result = run_sweep(spec, run_dir or default_run_dir(spec), address=args.address,
                           verbose=args.verbose, resume=resume, dry_run=args.dry_run)
    except SweepError as error:
        print(f"finesweep: {error}", file=sys.stderr)
        return error.exit_code
    except SweepStopped as stopped:
        print(f"finesweep: {stopped}", file=sys.stderr)
        return stopped.exit_code
    if result.interrupted is not None:
        return result.interrupted
    if result.stopped_because:
        return EXIT_BAD_INPUT
    return 0 if result.best_trial is not None else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    return _run(args.spec, _overrides(args), args.out, args, args.resume)


def cmd_resume(args: argparse.Namespace) -> int:
    overrides = {("budget", "trials"): args.trials} if args.trials is not None else {}
    return _run(args.run_dir / SPEC_COPY, overrides, args.run_dir, args, True)


def cmd_export(args: argparse.Namespace) -> int:
    # This command's modules only (module docstring).
    from finesweep.search.views.pareto_front import chosen_line, selection
    from finesweep.search.views.results import ResultsError, load_sweep
    if _bad_top_k(args.top_k):
        return EXIT_BAD_INPUT
    if args.reseed is not None:
        return _robust_export(args)
    try:
        # Read-only: a missing study is not created, a corrupt one is reported, not touched.
        record = load_sweep(args.run_dir)
    except ResultsError as error:
        return _results_error(error)
    ranked = record.ranked()
    robust = robust_choice(args.run_dir)
    paths = write_exports(selection(record, args.select), args.run_dir, ranked, args.top_k)
    if not paths:
        print("finesweep: no COMPLETE trial to export", file=sys.stderr)
        return 1
    print(*chosen_line(paths[0]), sep="", end="", file=sys.stderr)
    if robust is not None:
        print(f"finesweep: kept {BEST_FILE}: it holds the robust best of `export --reseed` (trial {robust}, "
              f"numbers in {ROBUST_TABLE}); the single best trial (trial {ranked[0].number}) went to "
              f"{SINGLE_BEST_FILE}. To export the single best as {BEST_FILE}, delete {ROBUST_FILE} and export "
              "again, or run `export --reseed` again to redo the robust choice", file=sys.stderr)
    for path in paths:
        print(path)
    return 0


def _results_error(error: Exception) -> int:
    print(f"finesweep: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _robust_export(args: argparse.Namespace) -> int:
    # `export --reseed`'s modules only (module docstring); they import Ray when it starts.
    from finesweep.search.cluster import ClusterError
    from finesweep.search.views.results import ResultsError, load_sweep
    from finesweep.search.views.robust import robust_export_on_ray
    try:
        result = robust_export_on_ray(load_sweep(args.run_dir), args.address, top_k=args.top_k, reseed=args.reseed)
    except (ResultsError, ClusterError) as error:
        return _results_error(error)
    print(result.text())
    for path in result.paths:
        print(path)
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    # The leftovers' reader brings psutil: `clean` and the views that hint at leftovers only.
    from finesweep.search.run_dir.leftovers import clean_lines
    if not args.run_dir.is_dir():
        print(f"finesweep: {args.run_dir} is not a run directory", file=sys.stderr)
        return EXIT_BAD_INPUT
    for line in clean_lines(args.run_dir):
        print(f"finesweep: {line}")
    return 0


def _leftovers_hint(target: str) -> None:
    # The leftovers' reader brings psutil: not on `--help`'s path.
    from finesweep.search.run_dir.leftovers import view_hint
    hint = view_hint(target)
    if hint:
        print(f"finesweep: {hint}", file=sys.stderr)


def _bad_top_k(top_k: int) -> bool:
    if top_k < 1:
        print(f"finesweep: --top-k must be at least 1, but got {top_k}", file=sys.stderr)
    return top_k < 1


def cmd_status(args: argparse.Namespace) -> int:
    # This command's modules only (module docstring); Optuna comes when the study is read.
    from finesweep.search.views.results import ResultsError, load_sweep
    from finesweep.search.views.status import status_text
    if _bad_top_k(args.top_k):
        return EXIT_BAD_INPUT
    try:
        print(status_text(load_sweep(args.target, args.study), args.top_k))
    except ResultsError as error:
        return _results_error(error)
    _leftovers_hint(args.target)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    # This command's modules only (module docstring); matplotlib comes with the first plot.
    from finesweep.search.views.report import write_report
    from finesweep.search.views.results import ResultsError, load_sweep
    if _bad_top_k(args.top_k):
        return EXIT_BAD_INPUT
    try:
        print(write_report(load_sweep(args.run_dir), args.out, args.top_k))
    except ResultsError as error:
        return _results_error(error)
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    # This command's modules only (module docstring); torch comes when the members are loaded.
    from finesweep.search.views.ensemble import build_ensemble, reevaluate
    from finesweep.search.views.results import ResultsError, load_sweep
    try:
        if args.target.is_file():
            report = reevaluate(args.target)
        else:
            report = build_ensemble(load_sweep(args.target), args.top_k, args.outputs)
    except ResultsError as error:
        return _results_error(error)
    print(report.text())
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    # This command's module only (module docstring); torch and Lightning come when it trains.
    from finesweep.search.views.retrain import RetrainError, retrain
    for flag, value in (("--max-epochs", args.max_epochs), ("--seed", args.seed), ("--workers", args.workers)):
        if value is not None and value < (0 if flag == "--seed" else 1):
            print(f"finesweep: {flag} must be at least {0 if flag == '--seed' else 1}, but got {value}",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
    try:
        retrain(args.config, args.out, max_epochs=args.max_epochs, seed=args.seed, workers=args.workers)
    except RetrainError as error:
        print(f"finesweep: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    # This command's module only (module docstring); TensorBoard comes when it serves.
    from finesweep.search.views.board import BoardError, missing_boards, serve
    missing = missing_boards(args.run_dirs)
    if missing:
        print(f"finesweep: no tensorboard/ folder in {', '.join(missing)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"finesweep: TensorBoard on http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    stop_on_ctrl_c()
    try:
        return serve(args.run_dirs, host=args.host, port=args.port, reload_interval=args.reload_interval)
    except BoardError as error:
        print(f"finesweep: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def cmd_dashboard(args: argparse.Namespace) -> int:
    # This command's modules only (module docstring).
    from finesweep.search.views.results import ResultsError, read_only_url, storage_of
    try:
        url = storage_of(args.target)
        # A view never changes the study: SQLite is opened read-only, and for every database
        # the dashboard's write API (delete study, tell trial, notes...) answers 405.
        readable = read_only_url(url)
    except ResultsError as error:
        return _results_error(error)
    print(f"finesweep: optuna-dashboard (read-only) of {describe_storage(url)} on "
          f"http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    stop_on_ctrl_c()
    from finesweep.search.views.dashboard import serve  # The WSGI server; optuna-dashboard comes when it serves.

    # In this process (no child left behind when it is stopped), and the URL, which may hold
    # a password, never appears on a command line.
    serve(readable, host=args.host, port=args.port)
    return 0


COMMANDS = {"sweep": cmd_sweep, "resume": cmd_resume, "export": cmd_export, "train": cmd_train,
            "tensorboard": cmd_tensorboard, "status": cmd_status, "report": cmd_report, "ensemble": cmd_ensemble,
            "dashboard": cmd_dashboard, "init": cmd_init, "tasks": cmd_tasks, "clean": cmd_clean}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # No command imports from the folder it runs in ahead of the installed packages.
    demote_working_directory()
    try:
        return COMMANDS[args.command](args)
    except RunFileError as error:  # A run directory's file holds what no finesweep command wrote.
        print(f"finesweep: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SpecError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_INPUT
    except UserCodeTimeout as error:
        print(f"finesweep: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MissingDataSource as error:
        print(f"finesweep: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("finesweep: interrupted", file=sys.stderr)
        return 130
    except OSError as error:
        if error.errno == errno.ELOOP:  # A link planted where the run's own folder or file belongs.
            print(f"finesweep: {error.filename}: {error.strerror}; nothing was written there", file=sys.stderr)
            return EXIT_BAD_INPUT
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Files are written whole or not at all (written aside, then renamed).
        print(f"finesweep: no space left on the device{f' writing {error.filename}' if error.filename else ''}; "
              "free some space and run the command again", file=sys.stderr)
        # A sweep that ran (its finished trials are kept) failed; any other command was refused.
        return 1 if args.command in ("sweep", "resume") else EXIT_BAD_INPUT
