"""What the whole suite shares: the CPU threads of a parallel run (``make test`` runs pytest-xdist
workers), the toy data, and the toy models trained once through ``tools/train.py``.

The session fixtures are made once per test run, also across xdist workers: the first worker that
needs one makes it under a file lock in the run's shared temporary folder, the others wait for it
and read it. Tests read them and write their own outputs elsewhere (``workspace``)."""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from tests.helpers import DET_CONFIG, ROOT, SEG_CONFIG, make_toy_data_in, run_tool, short_run

# tools/train.py runs of the toy configs that several test modules look at
TRAINED_SEG_ITERS = 8
# --tensorboard: the event file is checked too; deterministic, with stochastic depth and a
# checkpoint every 2 iterations: also the uninterrupted run that a killed and resumed one must
# end equal to, bit for bit (tests/tools/test_end_to_end.py)
TRAINED_SEG_OPTIONS = ('--tensorboard', *short_run(TRAINED_SEG_ITERS, 2),
                       'randomness.deterministic=True', 'model.backbone.drop_path_rate=0.2')
TRAINED_DET_ITERS = 30  # the first iteration count at which the toy's AP is not all zeros


def pytest_configure(config):
    """xdist workers share the machine's cores: each gets its share of threads (torch's and, for
    the tools the tests start, OpenMP's), not every core each, so that no two workers' thread
    pools spin against each other."""
    workers = getattr(config, 'workerinput', {}).get('workercount', 1)  # set in xdist workers
    if workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ.setdefault('OMP_NUM_THREADS', str(threads))
        os.environ.setdefault('MKL_NUM_THREADS', str(threads))
        torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))


@pytest.fixture(scope='session')
def run_tmp(tmp_path_factory, request) -> Path:
    """This test run's temporary root, the same folder for every xdist worker."""
    root = tmp_path_factory.getbasetemp()
    if hasattr(request.config, 'workerinput'):  # set in xdist workers
        root = root.parent  # each worker's base is a sub-folder of the run's
    return root


def made_once(run_tmp: Path, name: str, make: Callable[[Path], None]) -> Path:
    """The folder ``name`` in ``run_tmp``, filled by ``make(folder)`` the first time any test (of
    any xdist worker) asks for it. A ``make`` that raises leaves no folder behind, so the next
    test that asks tries again and fails with its own traceback."""
    folder = run_tmp / name
    done = folder / '.complete'
    with FileLock(str(run_tmp / f'{name}.lock')):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                make(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            done.touch()
    return folder


@pytest.fixture(scope='session')
def toy_data(run_tmp) -> Path:
    """data/ of the toy sets (16 training and 4 validation images of each task): the tools'
    ``data_root`` when they run in a folder that links it (``workspace``). Read only."""
    folder = made_once(run_tmp, 'toy_data',
                       lambda folder: make_toy_data_in(folder, num_train=16, num_val=4))
    return folder / 'data'


def link_toy_data(folder: Path, toy_data: Path) -> Path:
    """``folder`` (created) with ``data`` linked to the shared toy data: a cwd for the tools."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'data').symlink_to(toy_data, target_is_directory=True)
    return folder


@pytest.fixture(scope='module')
def workspace(tmp_path_factory, toy_data) -> Path:
    """A folder of the test module's own with ``data`` linked to the shared toy data: the cwd of
    the tools' runs, where their work dirs go."""
    return link_toy_data(tmp_path_factory.mktemp('workspace'), toy_data)


def trained_once(run_tmp: Path, toy_data: Path, name: str, config: str,
                 options: Sequence[str]) -> Path:
    """The work dir of ``tools/train.py config --work-dir ... *options``, run once per test run
    in a folder that links the shared toy data."""
    def make(folder: Path) -> None:
        cwd = link_toy_data(folder / 'cwd', toy_data)
        run_tool([ROOT / 'tools/train.py', config, '--work-dir', folder / 'work_dir', *options],
                 cwd=cwd, timeout=1800)
    return made_once(run_tmp, name, make) / 'work_dir'


@pytest.fixture(scope='session')
def trained_seg(run_tmp, toy_data) -> Path:
    """The work dir of the toy UperNet trained ``TRAINED_SEG_ITERS`` iterations by tools/train.py
    with ``TRAINED_SEG_OPTIONS`` (checkpoints ``iter_2.pth`` ... ``iter_8.pth``, logs, event
    file)."""
    return trained_once(run_tmp, toy_data, 'trained_seg', SEG_CONFIG, TRAINED_SEG_OPTIONS)


@pytest.fixture(scope='session')
def trained_det(run_tmp, toy_data) -> Path:
    """The work dir of the toy Mask R-CNN trained ``TRAINED_DET_ITERS`` iterations by
    tools/train.py (checkpoint ``iter_30.pth``, logs)."""
    return trained_once(run_tmp, toy_data, 'trained_det', DET_CONFIG,
                        short_run(TRAINED_DET_ITERS, TRAINED_DET_ITERS))
