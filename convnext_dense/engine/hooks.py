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

import logging
import random

import numpy as np
import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.utils import ProgressBar

from ..checkpoint import load_model_checkpoint
from ..compat import replay_skipped_batches
from .build import unwrap_model


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Checkpoint and restore the torch, CUDA, numpy and python RNG states of this process.

    The states are restored where the uninterrupted run saved them, relative to the data
    loader's iterator, whose creation draws a seed from torch's generator: an iteration-based
    loop made it before training started, so they are restored at the first iteration after
    the resume (after the resumed loop has made its own and replayed the skipped batches); an
    epoch-based loop makes one per epoch after ``before_train_epoch``, where they are restored.
    Not when the checkpoint is loaded: the Runner then still initialises weights, which draws
    from the same generators, in the uninterrupted run before training. Data-pipeline
    randomness lives in the dataloader workers, which mmengine seeds per worker and which
    replay the skipped batches on resume.

    The states are stored as bytes, not tensors: mmengine resumes with ``map_location`` set to
    the current GPU, which would bring tensors back as CUDA tensors, and ``torch.set_rng_state``
    takes CPU bytes only. A run resumed with fewer GPUs visible than the checkpoint has CUDA
    states for restores those it has devices for, and says so.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._pending: dict | None = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        checkpoint['rng_state'] = dict(
            torch=_to_bytes(torch.get_rng_state()),
            cuda=[_to_bytes(state) for state in cuda],
            numpy=_numpy_state_to_bytes(np.random.get_state()),
            python=_python_state_to_bytes(random.getstate()))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get('rng_state')

    def before_train(self, runner) -> None:
        replay_skipped_batches(runner.train_loop)  # onedl-mmengine skips without loading

    def before_train_epoch(self, runner) -> None:
        if getattr(runner.train_loop, 'dataloader_iterator', None) is None:  # epoch-based
            self._restore()

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(_byte_tensor(state['torch']))
        _restore_cuda_states(state['cuda'])
        np.random.set_state(_numpy_state_from_bytes(state['numpy']))
        random.setstate(_python_state_from_bytes(state['python']))


def _restore_cuda_states(states: list) -> None:
    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for device, state in enumerate(states[:devices]):
        torch.cuda.set_rng_state(_byte_tensor(state), device)
    if states and len(states) != devices:
        print_log(f'RNGStateHook: the checkpoint holds the CUDA RNG states of {len(states)} '
                  f'devices and this process sees {devices}: restored '
                  f'{min(len(states), devices)}; random draws on the others differ from the '
                  'uninterrupted run', logger='current', level=logging.WARNING)


# Stored as bytes, ints and strings: loadable with torch.load(weights_only=True) and untouched by
# map_location. Checkpoints of earlier versions hold tensors, read back from any device.
def _to_bytes(state: torch.Tensor) -> bytes:
    return state.cpu().numpy().tobytes()


def _array(state, dtype: str) -> np.ndarray:
    if isinstance(state, torch.Tensor):
        return state.cpu().numpy().astype(dtype)
    return np.frombuffer(state, dtype=dtype).copy()


def _byte_tensor(state) -> torch.Tensor:
    return torch.from_numpy(_array(state, 'u1'))


def _numpy_state_to_bytes(state: tuple) -> dict:
    name, keys, pos, has_gauss, cached = state
    return dict(name=name, keys=keys.astype('<u4').tobytes(), pos=int(pos),
                has_gauss=int(has_gauss), cached=float(cached))


def _numpy_state_from_bytes(state: dict) -> tuple:
    return (state['name'], _array(state['keys'], '<u4').astype(np.uint32), state['pos'],
            state['has_gauss'], state['cached'])


def _python_state_to_bytes(state: tuple) -> dict:
    version, internal, gauss = state
    # 624 Mersenne Twister words and the position in them: all below 2**32
    return dict(version=version, internal=np.asarray(internal, dtype='<u4').tobytes(),
                gauss=gauss)


def _python_state_from_bytes(state: dict) -> tuple:
    return (state['version'], tuple(int(v) for v in _array(state['internal'], '<u4')),
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
        notes, _ = load_model_checkpoint(unwrap_model(runner.model), self.checkpoint)
        print_log('; '.join([f'Load checkpoint from {self.checkpoint}: every tensor of the '
                             'model loaded', *notes]), logger='current')
