"""TensorBoard HParams records for a sweep, written by the driver.

Workers write per-epoch scalars into ``tensorboard/trial_NNNN``; the driver adds, into the
same run, the trial's parameters and state once the trial has ended (only the driver knows
whether the scheduler pruned it), plus one experiment record at the root that fixes the
columns, so every trial (pruned and failed ones included) lines up in the HParams table.

A trial shows in the table as soon as it starts: its parameters with ``trial_state`` RUNNING go
into a run of their own, ``trial_NNNN/running``, removed when the trial ends. TensorBoard keeps
the first HParams record of a run for good (a later one in the same run is ignored by a running
server), so a start record cannot be updated in place; the server drops a deleted run on its next
reload, and the final record shows as ``trial_NNNN``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from finesweep.search.run_dir import LIVE_RUN
from finesweep.search.space import INACTIVE, CategoricalParam, SearchSpace
from google.protobuf import struct_pb2
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.summary.writer.record_writer import RecordWriter

EVENT_FILE_VERSION = "brain.Event:2"  # The first record of every event file, as TensorBoard's writers put it.
STATE_COLUMN = "trial_state"
STATES = ("RUNNING", "COMPLETE", "PRUNED", "FAIL")
_STATUS = {"COMPLETE": api_pb2.STATUS_SUCCESS, "PRUNED": api_pb2.STATUS_SUCCESS,
           "FAIL": api_pb2.STATUS_FAILURE}
# The sub-run holding a running trial's start record; see the module docstring.


def final_metric_tag(metric: str) -> str:
    return f"final/{metric}"


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> summary_pb2.Summary:
    data.version = metadata.PLUGIN_DATA_VERSION
    meta = metadata.create_summary_metadata(data)
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=tag, metadata=meta, tensor=metadata.NULL_TENSOR)])


def _write(directory: Path, staging_root: Path, suffix: str, *summaries: summary_pb2.Summary) -> None:
    """Write an event file that sorts after every event file already in ``directory``.

    TensorBoard reads a run's event files in name order and does not go back to a name that
    sorts before the one it has read; a worker's scalars file started in the same second by a
    process with a higher pid would otherwise hide this record (seen in CI). So the file is
    written aside and moved in under a name with a larger timestamp than any present.

    The records are written here, in the driver's thread: tensorboard's ``EventFileWriter``
    starts a writer thread and a staging folder per file: 3.7 s of a 400-trial sweep's 90 in the
    driver's profile (benchmarks/results/scale.md).
    """
    directory.mkdir(parents=True, exist_ok=True)
    # Staged outside TensorBoard's log directory, so no half-written run is ever seen there.
    handle, staged = tempfile.mkstemp(prefix=".finesweep-", suffix=suffix, dir=staging_root)
    try:
        with os.fdopen(handle, "wb") as file:
            records = RecordWriter(file)
            records.write(event_pb2.Event(wall_time=time.time(), file_version=EVENT_FILE_VERSION).SerializeToString())
            for summary in summaries:
                records.write(event_pb2.Event(wall_time=time.time(), summary=summary).SerializeToString())
        stamps = [int(p.name.split(".")[3]) for p in directory.glob("events.out.tfevents.*")
                  if p.name.split(".")[3].isdigit()]
        stamp = max([int(time.time()), *[s + 1 for s in stamps]])
        os.replace(staged, directory / f"events.out.tfevents.{stamp:010d}.finesweep.{os.getpid()}{suffix}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)


def _value(value: Any) -> Any:
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, (int, float)):
        return struct_pb2.Value(number_value=float(value))
    return struct_pb2.Value(string_value=str(value))


class HParamsLog:
    def __init__(self, tensorboard_root: str | Path, space: SearchSpace, metric: str,
                 others: Sequence[str] = ()) -> None:
        self.root = Path(tensorboard_root)
        self.space = space
        self.metric = metric
        # The further objectives of a sweep of several: one more metric column each.
        self.others = tuple(others)

    def write_experiment(self) -> None:
        """Column definitions: every searched parameter, the state, the final metric."""
        infos = []
        for param in self.space.params:
            info = api_pb2.HParamInfo(name=param.name)
            if isinstance(param, CategoricalParam):
                values = list(param.choices) + ([INACTIVE] if param.when else [])
                info.domain_discrete.extend(values)
                if all(isinstance(v, str) for v in values):
                    info.type = api_pb2.DATA_TYPE_STRING
            elif not param.when:
                info.type = api_pb2.DATA_TYPE_FLOAT64
            infos.append(info)
        state = api_pb2.HParamInfo(name=STATE_COLUMN, type=api_pb2.DATA_TYPE_STRING)
        state.domain_discrete.extend(list(STATES))
        infos.append(state)
        metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=final_metric_tag(name)))
                   for name in (self.metric, *self.others)]
        experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics,
                                        time_created_secs=time.time())
        _write(self.root, self.root.parent, ".experiment",
               _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)))

    def _start_summary(self, params: Mapping[str, Any], state: str) -> summary_pb2.Summary:
        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        # Every column for every trial: an inactive conditional parameter reads "inactive".
        for name, param_value in {**self.space.with_inactive(params), STATE_COLUMN: state}.items():
            start.hparams[name].CopyFrom(_value(param_value))
        return _summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start))

    def write_trial_start(self, run_name: str, params: Mapping[str, Any]) -> None:
        """Show a trial that has just started: its parameters, ``trial_state`` RUNNING."""
        _write(self.root / run_name / LIVE_RUN, self.root.parent, ".hparams", self._start_summary(params, "RUNNING"))

    def write_trial(self, run_name: str, params: Mapping[str, Any], state: str,
                    value: float | None, step: int, others: Sequence[float] = ()) -> None:
        """The trial's final record; its start record goes once the final one is in place."""
        end = plugin_data_pb2.SessionEndInfo(status=_STATUS[state], end_time_secs=time.time())
        summaries = [
            self._start_summary(params, state),
            _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)),
        ]
        for name, final in zip((self.metric, *self.others), (value, *others), strict=False):
            if final is not None and math.isfinite(final):
                summaries.append(summary_pb2.Summary(value=[summary_pb2.Summary.Value(
                    tag=final_metric_tag(name), simple_value=float(final))]))
        _write(self.root / run_name, self.root.parent, ".hparams", *summaries)
        shutil.rmtree(self.root / run_name / LIVE_RUN, ignore_errors=True)


class ScalarWriter:
    """A trial's per-epoch scalars, in the event files torch's ``SummaryWriter`` writes (it wraps
    the same ``EventFileWriter``), without importing torch."""

    def __init__(self, directory: str | Path) -> None:
        self._writer = EventFileWriter(str(directory), filename_suffix=".scalars")

    def add(self, metrics: Mapping[str, float], step: int) -> None:
        values = [summary_pb2.Summary.Value(tag=name, simple_value=float(value)) for name, value in metrics.items()]
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=step,
                                               summary=summary_pb2.Summary(value=values)))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
