"""Training curves of an mmengine run: the loss, the learning rate and the validation metrics
against the iteration, read from the scalars the run logged and drawn with matplotlib.

mmengine's ``LocalVisBackend`` (every config's ``visualizer``) writes them to
``WORK_DIR/<timestamp>/vis_data/scalars.json``, one JSON object per line and a folder per run
(a resumed training starts a new one): the training lines every ``LoggerHook.interval``
iterations (``loss``, its parts, ``lr``, timings, ``step`` = the iteration) and one line of
metrics per evaluation. :func:`load_history` merges a work dir's runs, a later run replacing the
lines of the earlier ones from its first step on (a resume repeats no iteration, a new run from
scratch leaves only itself); :func:`plot_curves` draws one panel per series.

An evaluation's ``step`` is its iteration when the ``LoggerHook`` logs metrics by iteration
(``log_metric_by_epoch=False``: mmseg's runtime and the toy configs); mmdet's default logs the
epoch instead, and an iteration-based loop then logs epoch 0. Either is smaller than the
iteration of the training line before it, whose iteration the evaluation is drawn at (within
one logging interval of the true one).
"""
from __future__ import annotations

import difflib
import glob
import json
import math
import os
import os.path as osp
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

SCALARS_FILE = 'scalars.json'
# What every line carries besides its values: no curve of the training.
BOOKKEEPING_KEYS = frozenset({'step', 'iter', 'epoch', 'time', 'data_time', 'memory'})
# Keys only training lines carry: the other lines are evaluations.
TRAINING_KEYS = frozenset({'loss', 'lr'})
# COCO's AP at fixed IoU thresholds and per object size: drawn when asked for by name, not by
# default (12 panels would bury the 2 summary ones).
BREAKDOWN = re.compile(r'_(50|75|s|m|l)$')
LINE_COLOR = '#1f77b4'  # matplotlib's first cycle colour, the same in every panel
PANEL_SIZE = (4.2, 3.0)  # inches; at DPI 100: 420x300 pixels a panel
DPI = 100
MAX_COLUMNS = 3


@dataclass
class History:
    """The scalars of a work dir: the merged lines and the files they came from."""

    work_dir: str
    files: list[str]
    records: list[dict]

    @property
    def keys(self) -> list[str]:
        """Every series the lines hold (sorted), ``step`` aside."""
        return sorted({key for record in self.records for key in record} - {'step'})

    @property
    def training_keys(self) -> set[str]:
        """The keys of the training lines (the others are evaluations')."""
        return {key for record in self.records if TRAINING_KEYS & record.keys()
                for key in record} - BOOKKEEPING_KEYS

    @property
    def default_keys(self) -> list[str]:
        """``loss`` and ``lr``, then each evaluation metric (COCO's breakdown left out), in the
        order they were first logged."""
        keys = [key for key in ('loss', 'lr') if any(key in r for r in self.records)]
        for record in self.records:
            if TRAINING_KEYS & record.keys():
                continue
            keys += [key for key in record
                     if key not in BOOKKEEPING_KEYS and not BREAKDOWN.search(key)
                     and key not in keys and _is_number(record[key])]
        return keys

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(iterations, values)`` of ``key``; a ``ValueError`` naming the keys there are if
        the log has no such series."""
        if key not in self.keys:
            by_lower = {name.lower(): name for name in self.keys}
            close = [by_lower[name] for name in
                     difflib.get_close_matches(key.lower(), by_lower, n=3, cutoff=0.6)]
            hint = f"did you mean {', '.join(map(repr, close))}? " if close else ''
            raise ValueError(f'key {key!r} is not in the log of {self.work_dir!r} '
                             f"({', '.join(self.files)}); {hint}its keys: "
                             f"{', '.join(self.keys)}")
        steps, values = [], []
        last_training_step = 0
        for record in self.records:
            step = int(record.get('step', 0))
            if TRAINING_KEYS & record.keys():
                last_training_step = step
            else:  # an evaluation logged by epoch: drawn at the iteration before it
                step = max(step, last_training_step)
            if key in record and _is_number(record[key]):
                steps.append(step)
                values.append(float(record[key]))
        if not values:
            raise ValueError(f'key {key!r} of the log of {self.work_dir!r} holds no number')
        return steps, values


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def find_scalars(work_dir: str) -> list[str]:
    """The ``scalars.json`` files of the runs in ``work_dir``, oldest first.

    ``work_dir`` is a training's work dir (its runs are ``<timestamp>/vis_data/scalars.json``),
    one run's ``<timestamp>`` folder, or a ``scalars.json`` itself.
    """
    if osp.isfile(work_dir):
        return [work_dir]
    if not osp.isdir(work_dir):
        raise FileNotFoundError(f'work dir {work_dir!r} does not exist')
    run = osp.join(work_dir, 'vis_data', SCALARS_FILE)
    if osp.isfile(run):
        return [run]
    # mmengine names a run's folder by its start time, %Y%m%d_%H%M%S: sorted = in time order
    runs = sorted(glob.glob(osp.join(glob.escape(work_dir), '*', 'vis_data', SCALARS_FILE)))
    if not runs:
        raise FileNotFoundError(
            f'no training log under {work_dir!r}: no <timestamp>/vis_data/{SCALARS_FILE} '
            "(mmengine's LocalVisBackend writes one per run of tools/train.py); did the "
            'training start, and is this its --work-dir?')
    return runs


def read_scalars(path: str) -> list[dict]:
    """The lines of one ``scalars.json``, as dicts; an error names the file and line."""
    records = []
    with open(path, encoding='utf-8') as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f'{path}:{number}: not a JSON line ({error})') from None
            if not isinstance(record, dict):
                raise ValueError(f'{path}:{number}: a JSON {type(record).__name__}, not an '
                                 'object of scalars')
            records.append(record)
    return records


def load_history(work_dir: str) -> History:
    """Every run of ``work_dir`` merged (see the module's docstring)."""
    files = find_scalars(work_dir)
    records: list[dict] = []
    used = []
    for path in files:
        run = read_scalars(path)
        if not run:
            continue  # a run that stopped before its first log line
        first = int(run[0].get('step', 0))
        records = [record for record in records if int(record.get('step', 0)) < first] + run
        used.append(path)
    if not records:
        raise ValueError(f'the log of {work_dir!r} ({", ".join(files)}) holds no line yet')
    return History(work_dir, used, records)


@dataclass
class Panel:
    """One drawn series and where its plot area is in the picture, in pixels."""

    key: str
    steps: list[int]
    values: list[float]
    box: tuple[int, int, int, int]  # (left, top, right, bottom) of the axes' area


@dataclass
class CurvesPicture:
    path: str
    size: tuple[int, int]  # (width, height) in pixels
    panels: list[Panel] = field(default_factory=list)


def plot_curves(work_dir: str, keys: Sequence[str] | None = None, out: str | None = None,
                title: str | None = None) -> CurvesPicture:
    """Draw ``keys`` of the log of ``work_dir`` (default :attr:`History.default_keys`) against
    the iteration, one panel each, into the PNG ``out`` (default ``WORK_DIR/curves.png``).

    The panels share the iteration axis, from 0 to the last logged iteration. A series of few
    points is drawn with markers; an evaluation metric's values are written beside them.
    """
    # the object-oriented interface, without pyplot: no GUI backend, no global state
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    history = load_history(work_dir)
    keys = list(keys) if keys else history.default_keys
    if not keys:
        raise ValueError(f'the log of {work_dir!r} has no loss, lr or metric to draw; its '
                         f"keys: {', '.join(history.keys)}")
    series = {key: history.series(key) for key in dict.fromkeys(keys)}
    if out is None:
        out = osp.join(work_dir if osp.isdir(work_dir) else osp.dirname(work_dir) or '.',
                       'curves.png')
    columns = min(len(series), MAX_COLUMNS)
    rows = math.ceil(len(series) / columns)
    figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows + 0.4), dpi=DPI)
    canvas = FigureCanvasAgg(figure)
    figure.suptitle(title or osp.basename(osp.normpath(history.work_dir)))
    last_step = max(max(steps) for steps, _ in series.values())
    training_keys = history.training_keys
    axes_of = {}
    for index, (key, (steps, values)) in enumerate(series.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.plot(steps, values, color=LINE_COLOR, linewidth=1.5,
                  marker='o' if len(values) <= 30 else None, markersize=4)
        axes.set_xlim(0, max(last_step, 1) * 1.04)
        if key not in training_keys and len(values) <= 8:
            axes.margins(y=0.2)  # room for the values written over the points
            for step, value in zip(steps, values):
                axes.annotate(f'{value:.4g}', (step, value), textcoords='offset points',
                              xytext=(0, 6), ha='center', fontsize=8)
        axes.set_title(key)
        axes.set_xlabel('iteration')
        axes.grid(True, alpha=0.3)
        if key == 'lr' or key.endswith('_lr'):
            axes.ticklabel_format(axis='y', style='sci', scilimits=(-2, 3))
        axes_of[key] = axes
    figure.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    canvas.print_png(out)  # at the figure's dpi, not cropped: axes boxes are picture pixels
    width, height = (int(round(v)) for v in canvas.get_width_height())
    panels = []
    for key, axes in axes_of.items():
        box = axes.get_window_extent()  # display pixels, origin bottom left
        panels.append(Panel(key, *series[key], (int(box.x0), int(height - box.y1),
                                               int(box.x1), int(height - box.y0))))
    return CurvesPicture(out, (width, height), panels)
