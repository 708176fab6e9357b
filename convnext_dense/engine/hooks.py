"""Hooks the tools add to every run.

* :class:`RNGStateHook` saves the random-number-generator states in each checkpoint and restores
  them when a run resumes, so that a resumed run draws the same stochastic-depth masks as an
  uninterrupted one (mmengine 0.10.7 resumes weights, optimizer, scheduler and data order, but
  not the RNG streams).
* :class:`EvalProgressBarHook` shows a progress bar over the dataset during validation and
  testing on rank 0.
* :class:`LoadCheckpointHook` loads the checkpoint ``tools/test.py`` evaluates, refusing one that
  does not fit the model (mmengine's ``load_from`` only warns) and converting a ConvNeXt backbone
  stored in another layout.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.utils import ProgressBar

from .compat import replay_skipped_batches


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Checkpoint and restore the torch, numpy and python RNG states of this process.

    The states are restored at the first training iteration after a resume, not when the
    checkpoint is loaded: between the two, the Runner builds the dataloader iterator and
    initialises weights, which draw from the same generators in the uninterrupted run too but
    at a different point. Data-pipeline randomness lives in the dataloader workers, which
    mmengine seeds per worker and which replay the skipped batches on resume.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._pending: dict | None = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = dict(
            torch=torch.get_rng_state(),
            cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            numpy=_numpy_state_to_tensors(np.random.get_state()),
            python=_python_state_to_tensors(random.getstate()))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get('rng_state')

    def before_train(self, runner) -> None:
        replay_skipped_batches(runner.train_loop)  # onedl-mmengine skips without loading

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state['torch'])
        if state['cuda'] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
        np.random.set_state(_numpy_state_from_tensors(state['numpy']))
        random.setstate(_python_state_from_tensors(state['python']))


# RNG states are stored as tensors and ints so that checkpoints stay loadable with
# torch.load(weights_only=True).
def _numpy_state_to_tensors(state: tuple) -> dict:
    name, keys, pos, has_gauss, cached = state
    return dict(name=name, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                has_gauss=int(has_gauss), cached=float(cached))


def _numpy_state_from_tensors(state: dict) -> tuple:
    return (state['name'], state['keys'].numpy().astype(np.uint32), state['pos'],
            state['has_gauss'], state['cached'])


def _python_state_to_tensors(state: tuple) -> dict:
    version, internal, gauss = state
    return dict(version=version, internal=torch.tensor(internal, dtype=torch.int64),
                gauss=gauss)


def _python_state_from_tensors(state: dict) -> tuple:
    return (state['version'], tuple(int(v) for v in state['internal'].tolist()),
            state['gauss'])


@HOOKS.register_module()
class EvalProgressBarHook(Hook):
    """A progress bar over the validation/test dataset (rank 0 only)."""

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._bar: ProgressBar | None = None

    def _start(self, runner, loop) -> None:
        if is_main_process():
            dataloader = loop.dataloader
            self._bar = ProgressBar(len(dataloader.dataset))
            self._batch_size = dataloader.batch_size or 1

    def _update(self, outputs) -> None:
        if self._bar is not None:
            # Each rank handles its share of the dataset; rank 0 counts for all of them.
            done = len(outputs) if outputs is not None else self._batch_size
            for _ in range(done * get_world_size()):
                if self._bar.completed < self._bar.task_num:
                    self._bar.update()

    def _finish(self) -> None:
        if self._bar is not None:
            self._bar.file.write('\n')
            self._bar = None

    def before_val_epoch(self, runner) -> None:
        self._start(runner, runner.val_loop)

    def before_test_epoch(self, runner) -> None:
        self._start(runner, runner.test_loop)

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._update(outputs)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._update(outputs)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._finish()

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._finish()


@HOOKS.register_module()
class LoadCheckpointHook(Hook):
    """Load a whole-model checkpoint before the run, every tensor accounted for.

    Used instead of ``load_from`` (which loads with ``strict=False`` and only warns): see
    :func:`convnext_dense.checkpoint.fit_model_state_dict`. Runs at ``before_run``, before the
    Runner's own (then empty) ``load_from``.
    """

    priority = 'VERY_HIGH'

    def __init__(self, checkpoint: str) -> None:
        self.checkpoint = checkpoint

    def before_run(self, runner) -> None:
        from ..checkpoint import load_model_checkpoint

        model = runner.model
        while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
            model = model.module
        notes, _ = load_model_checkpoint(model, self.checkpoint)
        print_log('; '.join([f'Load checkpoint from {self.checkpoint}: every tensor of the '
                             'model loaded', *notes]), logger='current')
