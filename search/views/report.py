"""`launch.py report`: one offline HTML page on a sweep, with its plots as PNG files.

``report.html`` embeds every plot (base64), so the page alone is complete: no script, no
stylesheet or font from the network. The same plots are written beside it in ``report/``.
Every trial is on the page, pruned and failed ones included; a trial's parameter that was
inactive (its condition did not hold) shows as ``-`` in tables and on its own row
("inactive") of the parallel-coordinates plot. The ``plot_*`` functions return matplotlib
figures (tests inspect them); :func:`write_report` renders them. matplotlib, TensorBoard and
Optuna's distributions are imported inside the functions that use them: they are slow to import.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import math
import shutil
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finesweep.models.run import Direction, metric_split
from finesweep.search.run_dir import PLOT_DIR, REPORT_FILE, own_folder, tensorboard_dir
from finesweep.search.study import describe_storage, first_value, state_counts
from finesweep.search.views.importance import Importances, importances
from finesweep.search.views.results import SweepRecord, format_value, param_cells, trial_value

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

# Where an inactive parameter sits on the parallel-coordinates axes (active values span 0..1).
_INACTIVE_Y = -0.15
_COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#9a9a9a", "FAIL": "#d62728"}
# The training loss per epoch, as the trial's worker writes what the module logged to
# TensorBoard (search.trial): the first of these names a trial logged, else any training-split
# name with "loss" in it (`train/nll`, `training_loss`).
LOSS_TAGS = ("train_loss", "train/loss", "train_loss_epoch", "train/loss_epoch", "loss")


@dataclass(frozen=True)
class Plot:
    name: str
    title: str
    caption: str
    png: bytes
    warning: str | None = None


def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    from matplotlib.figure import Figure  # matplotlib is slow to import (see the module docstring)

    # A bare Figure needs no GUI backend and keeps no global pyplot state.
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_history(record: SweepRecord, trials: list[optuna.trial.FrozenTrial]) -> Figure:
    figure = _figure()
    axes = figure.add_subplot()
    finite = [v for t in trials if (v := trial_value(t, record.mode)) is not None]
    floor = min(finite) if finite else 0.0
    for state, marker, label in (("PRUNED", "o", "PRUNED (best epoch before it was stopped)"),
                                 ("COMPLETE", "o", "COMPLETE"), ("FAIL", "x", "FAIL (no value)")):
        chosen = [t for t in trials if t.state.name == state]
        if not chosen:
            continue
        xs = [t.number for t in chosen]
        ys = [trial_value(t, record.mode) if state != "FAIL" else floor for t in chosen]
        if state == "FAIL":
            axes.scatter(xs, ys, marker="x", color=_COLORS[state], label=label, zorder=3)
        else:
            axes.scatter(xs, ys, marker=marker, facecolors="none" if state == "PRUNED" else _COLORS[state],
                         edgecolors=_COLORS[state], label=label, zorder=3)
    best: float | None = None
    steps_x, steps_y = [], []
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state.name == "COMPLETE":
            value = first_value(trial)
            best = value if best is None else Direction(record.mode).best((best, value))
        if best is not None:
            steps_x.append(trial.number)
            steps_y.append(best)
    if steps_x:
        axes.step(steps_x, steps_y, where="post", color="#ff7f0e", label="best COMPLETE so far")
    axes.set_xlabel("trial")
    axes.set_ylabel(record.metric)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    return figure


def plot_importances(result: Importances, metric: str) -> Figure:
    values = result.values
    figure = _figure(7.0, 0.45 * max(len(values), 2) + (2.0 if result.warning else 1.2))
    axes = figure.add_subplot()
    names = list(values)[::-1]
    axes.barh(names, [values[n] for n in names], color="#1f77b4")
    axes.set_xlabel(f"importance for {metric} (sums to 1)")
    axes.grid(axis="x", alpha=0.3)
    if result.warning:
        # On the image itself: the PNG is also used on its own, away from the page's text.
        axes.set_title("\n".join(textwrap.wrap(result.warning, 80)), color="#b22222", fontsize=9, loc="left")
    return figure


def _axis_position(trial: optuna.trial.FrozenTrial, name: str) -> float:
    """Where the trial's value of ``name`` sits on its 0..1 axis; inactive below the axis."""
    from optuna.distributions import CategoricalDistribution  # Optuna is slow to import (module docstring)

    if name not in trial.params:
        return _INACTIVE_Y
    distribution = trial.distributions[name]
    value = trial.params[name]
    if isinstance(distribution, CategoricalDistribution):
        choices = distribution.choices
        return choices.index(value) / max(len(choices) - 1, 1)
    low, high = float(distribution.low), float(distribution.high)
    if getattr(distribution, "log", False):
        low, high, value = math.log(low), math.log(high), math.log(value)
    return (float(value) - low) / (high - low) if high > low else 0.5


def _axis_labels(trials: list[optuna.trial.FrozenTrial], name: str) -> list[tuple[float, str]]:
    from optuna.distributions import CategoricalDistribution  # Optuna is slow to import (module docstring)

    distribution = next((t.distributions[name] for t in trials if name in t.distributions), None)
    labels = []
    if isinstance(distribution, CategoricalDistribution):
        count = max(len(distribution.choices) - 1, 1)
        labels = [(i / count, str(choice)) for i, choice in enumerate(distribution.choices)]
    elif distribution is not None:
        labels = [(0.0, format_value(distribution.low)), (1.0, format_value(distribution.high))]
    if any(name not in t.params for t in trials):
        labels.append((_INACTIVE_Y, "inactive"))
    return labels


def plot_parallel(record: SweepRecord, trials: list[optuna.trial.FrozenTrial]) -> Figure:
    import matplotlib  # matplotlib is slow to import (see the module docstring)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    names = list(record.param_names)
    scored = [(t, v) for t in trials if (v := trial_value(t, record.mode)) is not None]
    figure = _figure(max(8.0, 1.3 * (len(names) + 1)), 5.0)
    axes = figure.add_subplot()
    if not scored:
        axes.text(0.5, 0.5, "no trial with a value yet", ha="center", transform=axes.transAxes)
        return figure
    low = min(v for _, v in scored)
    high = max(v for _, v in scored)
    span = (high - low) or 1.0
    # Yellow is the best value either way, hence the reversed map when lower is better.
    colormap = matplotlib.colormaps["viridis" if Direction(record.mode).maximizes else "viridis_r"]
    # Colours spread over the COMPLETE trials only: pruned ones would squash them together.
    complete = [v for t, v in scored if t.state.name == "COMPLETE"]
    c_low, c_span = (min(complete), (max(complete) - min(complete)) or 1.0) if complete else (0.0, 1.0)
    shades = Normalize(c_low, c_low + c_span)
    # Pruned trials first, in grey, then complete ones worst to best: the best is drawn on top.
    # Worst to best: the reverse of the best-first key.
    for trial, value in sorted(scored, key=lambda tv: (tv[0].state.name == "COMPLETE",
                                                       -Direction(record.mode).sort_key(tv[1]))):
        ys = [_axis_position(trial, name) for name in names] + [(value - low) / span]
        if trial.state.name == "COMPLETE":
            axes.plot(range(len(ys)), ys, color=colormap(shades(value)), alpha=0.95, linewidth=1.8)
        else:
            axes.plot(range(len(ys)), ys, color=_COLORS["PRUNED"], alpha=0.35, linewidth=0.8)
    labels = [*names, record.metric]
    axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    axes.set_yticks([])
    axes.set_ylim(_INACTIVE_Y - 0.08, 1.05)
    for index, name in enumerate(names):
        axes.axvline(index, color="black", linewidth=0.6)
        for y, text in _axis_labels([t for t, _ in scored], name):
            axes.annotate(text, (index, y), xytext=(3, 0), textcoords="offset points", fontsize=7, va="center")
    axes.axvline(len(names), color="black", linewidth=0.6)
    for y, value in ((0.0, low), (1.0, high)):
        axes.annotate(f"{value:.4g}", (len(names), y), xytext=(3, 0), textcoords="offset points", fontsize=7)
    if complete:
        figure.colorbar(ScalarMappable(shades, colormap), ax=axes, label=f"{record.metric} of COMPLETE trials",
                        fraction=0.03, pad=0.06)
    axes.set_title("colour: COMPLETE trials by value (yellow best); grey: PRUNED (best epoch before it was stopped)",
                   fontsize=9)
    return figure


def epoch_scalars(run_dir: Path | None, number: int, tag: str | None) -> dict[int, float]:
    """``tag`` per epoch as trial ``number`` wrote it to its TensorBoard run (None: its training
    loss, see :data:`LOSS_TAGS`); empty when the run or the tag is missing (a trial that failed
    before its first epoch, a copied study)."""
    return epoch_series(run_dir, number, tag)[1]


def loss_tag(tags: list[str]) -> str | None:
    """The name a trial logged its training loss under (see :data:`LOSS_TAGS`), if any."""
    found = next((t for t in LOSS_TAGS if t in tags), None)
    return found or next((t for t in sorted(tags) if metric_split(t) == "train" and "loss" in t.lower()), None)


def epoch_series(run_dir: Path | None, number: int, tag: str | None) -> tuple[str | None, dict[int, float]]:
    """:func:`epoch_scalars` with the tag it read."""
    if run_dir is None or not tensorboard_dir(run_dir, number).is_dir():
        return None, {}
    from tensorboard.backend.event_processing import event_accumulator  # TensorBoard: slow to import

    run = event_accumulator.EventAccumulator(str(tensorboard_dir(run_dir, number)),
                                             size_guidance={event_accumulator.SCALARS: 0})
    run.Reload()
    tags = run.Tags().get(event_accumulator.SCALARS, [])
    tag = tag if tag is not None else loss_tag(tags)
    if tag is None or tag not in tags:
        return tag, {}
    # A retried trial writes its first epochs again: the last value of an epoch wins.
    return tag, {int(event.step): float(event.value) for event in run.Scalars(tag)}


def plot_curves(record: SweepRecord, trials: list[optuna.trial.FrozenTrial], top_k: int) -> Figure:
    """The metric (left, from the study) and the training loss (right, from the trials'
    TensorBoard scalars) per epoch: the best ``top_k`` COMPLETE trials against every PRUNED one."""
    from matplotlib.ticker import MaxNLocator  # matplotlib is slow to import (see the module docstring)

    figure = _figure(12.0, 4.5)
    metric_axes, loss_axes = figure.subplots(1, 2)

    def curve(axes: Any, values: dict[int, float], **style: Any) -> Any:
        steps = sorted(values)
        return axes.plot(steps, [values[s] for s in steps], **style)[0] if steps else None

    names: list[str] = []

    def losses(trial: optuna.trial.FrozenTrial) -> dict[int, float]:
        # A pruned trial's worker may finish one more epoch before Ray stops it; the study
        # never saw that epoch, so both panels end where the trial's record does.
        last = max(trial.intermediate_values, default=0)
        tag, values = epoch_series(record.run_dir, trial.number, None)
        if tag is not None and values and tag not in names:
            names.append(tag)
        return {e: v for e, v in values.items() if e <= last}

    losses_seen = False
    pruned = [t for t in trials if t.state.name == "PRUNED" and t.intermediate_values]
    for index, trial in enumerate(pruned):
        style = {"color": _COLORS["PRUNED"], "alpha": 0.45, "linewidth": 0.8, "marker": ".", "markersize": 3}
        curve(metric_axes, trial.intermediate_values, label=f"PRUNED ({len(pruned)} trials)" if index == 0 else None,
              **style)
        losses_seen |= curve(loss_axes, losses(trial), **style) is not None
    for trial in record.ranked()[:top_k]:
        line = curve(metric_axes, trial.intermediate_values, linewidth=1.8,
                     label=f"trial {trial.number} ({record.metric} {first_value(trial):.4f})")
        # Same colour in both panels, so the legend on the left names the curves on the right.
        losses_seen |= curve(loss_axes, losses(trial), linewidth=1.8,
                             color=line.get_color() if line is not None else None) is not None
    loss_label = " / ".join(names) or "training loss"
    for axes, label in ((metric_axes, record.metric), (loss_axes, f"{loss_label} (mean over the epoch's batches)")):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
    if not losses_seen:
        loss_axes.text(0.5, 0.5, f"no training loss ({', '.join(LOSS_TAGS)}) in the trials' TensorBoard runs",
                       ha="center",
                       transform=loss_axes.transAxes)
    if metric_axes.get_legend_handles_labels()[0]:
        metric_axes.legend(loc="best", fontsize="small")
    return figure


def _table(header: list[str], rows: list[list[str]], row_class: Callable[[int], str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        css = f' class="{row_class(index)}"' if row_class else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; }
th { background: #f2f2f2; }
tr.PRUNED { color: #777; } tr.FAIL { color: #b22; } tr.RUNNING { color: #06c; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #555; font-size: 13px; }
.warning { color: #b22222; font-weight: bold; font-size: 14px; }
"""


def write_report(record: SweepRecord, out_dir: Path | None = None, top_k: int = 5) -> Path:
    """Write ``report.html`` and ``report/*.png`` into ``out_dir`` (default: the run directory)."""
    out_dir = Path(out_dir or record.run_dir or ".")
    # Here, not at the top: views.report_front imports this module.
    from finesweep.search.views.report_front import front_plots

    trials = record.study.get_trials(deepcopy=False)
    weights = importances(record, trials)
    curves = plot_curves(record, trials, top_k)
    loss_name = curves.axes[1].get_ylabel().split(" (mean", 1)[0]  # the tag(s) the trials logged it under
    plots = [
        Plot("history", "Optimisation history", "Each trial's value by trial number; the line is the best "
             "COMPLETE trial so far.", _png(plot_history(record, trials))),
        Plot("importances", "Parameter importances", weights.note,
             _png(plot_importances(weights, record.metric)) if weights.values else b"",
             weights.warning if weights.values else None),
        Plot("parallel_coordinates", "Parallel coordinates", "One line per trial across every searched "
             "parameter and the value; a parameter inactive for a trial sits on the 'inactive' row; the "
             "colour bar gives the value of a COMPLETE trial's line.",
             _png(plot_parallel(record, trials))),
        Plot("learning_curves", f"Learning curves: top {top_k} vs pruned",
             f"{record.metric} (left) and {loss_name} (right, from the trials' TensorBoard scalars) per epoch "
             f"of the best {top_k} COMPLETE trials against every PRUNED one.", _png(curves)),
    ]
    plots[1:1] = front_plots(record, trials)  # several objectives: the front comes right after the history
    sections = []
    for plot in plots:
        if plot.png:
            image = (f'<img alt="{html.escape(plot.title)}" src="data:image/png;base64,'
                     f'{base64.b64encode(plot.png).decode()}">')
        else:
            image = ""
        warning = f'<p class="warning">{html.escape(plot.warning)}</p>' if plot.warning else ""
        sections.append(f"<h2>{html.escape(plot.title)}</h2>{warning}"
                        f"<p class=\"note\">{html.escape(plot.caption)}</p>{image}")

    names = list(record.param_names)
    ranked = record.ranked()[:top_k]
    top = _table(["rank", "trial", record.metric, "best epoch", *names],
                 [[str(rank), str(t.number), f"{first_value(t):.4f}", str(t.user_attrs.get("best_epoch", "")),
                   *param_cells(t.params, names)] for rank, t in enumerate(ranked, start=1)]
                 ) if ranked else "<p>No COMPLETE trial yet.</p>"
    ordered = sorted(trials, key=lambda t: t.number)
    every = _table(
        ["trial", "state", record.metric, "epochs", *names, "reason"],
        [[str(t.number), t.state.name,
          "" if (v := trial_value(t, record.mode)) is None else f"{v:.4f}",
          str(max(t.intermediate_values) if t.intermediate_values else 0),
          *param_cells(t.params, names), str(t.user_attrs.get("fail_reason", ""))] for t in ordered],
        row_class=lambda index: ordered[index].state.name)
    counts = state_counts(record.study)
    name = record.study.study_name
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>finesweep report: {html.escape(name)}</title>
<style>{_STYLE}</style></head><body>
<h1>Sweep {html.escape(name)}</h1>
<p>{html.escape(", ".join(f"{state} {count}" for state, count in sorted(counts.items())))};
metric {html.escape(record.metric)} ({html.escape(record.mode)}); study in {html.escape(describe_storage(record.url))};
written {created}.</p>
<h2>Top {top_k}</h2>{top}
{''.join(sections)}
<h2>Every trial</h2>
<p class="note">A PRUNED trial's value is its best epoch before the scheduler stopped it; "-" marks a
parameter that was inactive for the trial.</p>
{every}
</body></html>
"""
    files = {f"{PLOT_DIR}/{plot.name}.png": plot.png for plot in plots if plot.png}
    files[REPORT_FILE] = page.encode("utf-8")
    write_files(out_dir, files)
    return out_dir / REPORT_FILE


def write_files(out_dir: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (relative name -> content) into ``out_dir`` all or none: each is written
    into a staging folder first and moved into place only once every one was written, so a
    full disk leaves neither half a report nor an empty folder behind."""
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        own_folder(out_dir / PLOT_DIR)
        staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out_dir))
        try:
            for name, content in files.items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                (staging / name).write_bytes(content)
            for name in files:
                (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
                (staging / name).replace(out_dir / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError:
        for folder in created:
            shutil.rmtree(folder, ignore_errors=True)
        if not (out_dir / REPORT_FILE).exists() and (out_dir / PLOT_DIR).is_dir() \
                and not any((out_dir / PLOT_DIR).iterdir()):
            (out_dir / PLOT_DIR).rmdir()
        raise
