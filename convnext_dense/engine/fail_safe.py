"""Long training runs that fail safe: they stop at the first non-finite loss or gradient, save a
resumable checkpoint when the job is told to stop (SIGTERM), and stop when a checkpoint cannot be
written, keeping the previous one.

Without these, a run trained in bf16 (which has no loss scaler to skip an overflowed step) keeps
training on NaN weights for hours after its loss diverged; a Slurm preemption or ``scancel``
loses everything since the last interval checkpoint (an epoch in the papers' 3x detection
schedules); and a full disk stops a run with a bare ``OSError`` on rank 0 while the other ranks
wait in their next collective.

* :class:`NonFiniteCheckHook` stops training at the first iteration whose loss or gradient norm
  is not finite (with fp16 AMP, after ``max_skipped_steps`` consecutive steps the loss scaler
  skipped), naming the iteration, the loss terms and the checkpoint to resume from.
* :class:`StopSignalHook` turns SIGTERM into: finish the current iteration, save the checkpoint
  an interval would have saved there, exit with status 143; ``--resume`` continues bitwise.
* :class:`CheckpointWriteCheckHook` makes a checkpoint that cannot be written stop every rank
  with an error naming the file, and keeps the checkpoint ``last_checkpoint`` points at.

``tools/train.py`` adds all three to every run and the project's configs list them in
``custom_hooks``; ``docs/long_runs.md`` describes them, resuming and Slurm.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import os.path as osp
import random
import signal
import threading

import numpy as np
import torch
from mmengine.dist import (
    all_gather_object,
    all_reduce,
    barrier,
    get_world_size,
    is_main_process,
)
from mmengine.fileio import join_path
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop

from ..fileio import atomic_write

__all__ = ['CheckpointWriteCheckHook', 'CheckpointWriteError', 'NonFiniteCheckHook',
           'NonFiniteTrainingError', 'StopSignalHook']


class NonFiniteTrainingError(FloatingPointError):
    """A training loss or gradient norm is NaN or infinite."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint (or its ``last_checkpoint`` pointer) could not be written."""


# -- shared -----------------------------------------------------------------------------------
def _last_checkpoint(runner) -> str | None:
    """The checkpoint a resumed run would start from: CheckpointHook records each one it writes
    in the message hub, which checkpoints carry, so a resumed run knows it too."""
    return runner.message_hub.get_info('last_ckpt')


def _resume_hint(runner) -> str:
    last = _last_checkpoint(runner)
    if last is None:
        return 'no checkpoint was written before it, so the run starts over'
    return (f'the last checkpoint is {last}; resume from it with tools/train.py CONFIG --resume '
            f'(WORK_DIR/last_checkpoint points at it) or --resume {last}')


def _stop_training(runner) -> None:
    """What every stop of these hooks does before it raises: give the signals back, and flush
    the visualizer's backends (TensorBoard writes its events every two minutes)."""
    for hook in runner.hooks:
        if isinstance(hook, StopSignalHook):
            hook.restore_signal_handlers()
    runner.visualizer.close()


def _optimizers(optim_wrapper) -> list[torch.optim.Optimizer]:
    if isinstance(optim_wrapper, OptimWrapper):
        return [optim_wrapper.optimizer]
    wrappers = getattr(optim_wrapper, 'optim_wrappers', None)  # OptimWrapperDict
    return [wrapper.optimizer for wrapper in wrappers.values()] if wrappers else []


# -- non-finite loss and gradients ------------------------------------------------------------
@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Stop training at the first iteration whose loss or gradient norm is NaN or infinite.

    Checked after every iteration, before ``CheckpointHook`` (priority 75 < ``VERY_LOW``), so
    no checkpoint of the broken weights is written: raises :class:`NonFiniteTrainingError`
    naming the iteration, the non-finite loss terms (the log variables whose name contains
    ``loss``, the terms mmengine sums into the total loss) on each rank, the gradient norm, and
    the checkpoint to resume from. A resumed run repeats the same steps bitwise, so something
    must change first (the learning rate, ``optim_wrapper.clip_grad``, the precision).

    The gradient norm is the 2-norm of the gradients the optimizer is about to apply, taken in
    an optimizer step pre-hook: one more read of the gradients per step. The findings are read
    with one host sync per iteration, after mmengine's logging has already waited for the step
    (it reads every loss term).

    With a loss scaler (mmengine's ``AmpOptimWrapper``, fp16) a step the scaler skips because
    its gradients overflowed is how dynamic loss scaling works (the scale halves and the next
    step tries again), not a failure; ``max_skipped_steps`` consecutive skipped steps are (a
    NaN that no scale removes), and so is a non-finite loss in a step the scaler applied. The
    gradient norm is then left to the scaler, which checks every gradient itself.

    In distributed training the ranks' findings are combined (one ``all_reduce`` of three flags
    per iteration), so that every rank stops at the same iteration.

    mmdet's ``CheckInvalidLossHook`` is not used: it checks only the total loss, every 50
    iterations by default, with an ``assert`` whose message is ``None``; it does not look at
    gradients, stops only the ranks whose own loss is NaN (the others then wait in their next
    collective), and fails on the steps a dynamic loss scaler skips by design. mmseg has none.

    Args:
        check_grad_norm: Also stop on a non-finite gradient norm (a NaN can reach the gradients
            with a finite loss, e.g. the backward of a norm at zero).
        max_skipped_steps: With a loss scaler, how many consecutive skipped steps stop the run.
            The scaler starts at 2**16 and halves per skip, so a healthy run skips a handful
            of steps at its start (and single ones later); 50 halvings bring the scale below
            1e-10, where no finite loss needs it.
    """

    priority = 75  # after ParamSchedulerHook (LOW), before StopSignalHook and CheckpointHook

    def __init__(self, check_grad_norm: bool = True, max_skipped_steps: int = 50) -> None:
        if not isinstance(max_skipped_steps, int) or max_skipped_steps < 1:
            raise ValueError(f'NonFiniteCheckHook: max_skipped_steps={max_skipped_steps!r}; '
                             'use a positive number of consecutive skipped steps')
        self.check_grad_norm = bool(check_grad_norm)
        self.max_skipped_steps = max_skipped_steps
        self._handles: list = []
        self._scaled = False
        self._skipped_in_a_row = 0
        self._reset_step_record()

    def _reset_step_record(self) -> None:
        self._stepped = False
        self._grad_norms: list[torch.Tensor] = []
        self._found_inf: list[torch.Tensor] = []

    def before_train(self, runner) -> None:
        self._scaled = getattr(runner.optim_wrapper, 'loss_scaler', None) is not None
        self._handles = [optimizer.register_step_pre_hook(self._before_step)
                         for optimizer in _optimizers(runner.optim_wrapper)]
        self._skipped_in_a_row = 0
        self._reset_step_record()

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _before_step(self, optimizer, args, kwargs) -> None:
        self._stepped = True
        # A GradScaler hands an optimizer with a fused step (fused AdamW) its found_inf flag and
        # calls step() even for a step that then changes nothing; others it does not call.
        found_inf = getattr(optimizer, 'found_inf', None)
        if isinstance(found_inf, torch.Tensor):
            self._found_inf.append(found_inf.detach().reshape(()) > 0)
        if self.check_grad_norm and not self._scaled:
            grads = [param.grad for group in optimizer.param_groups for param in group['params']
                     if param.grad is not None]
            if grads:
                self._grad_norms.append(
                    torch.nn.utils.get_total_norm(grads, error_if_nonfinite=False).detach())

    def _skipped(self, runner, device: torch.device) -> torch.Tensor:
        """Whether the loss scaler skipped this iteration's step (on ``device``, no sync)."""
        wrapper = runner.optim_wrapper
        expected = self._scaled and isinstance(wrapper, OptimWrapper) and wrapper.should_update()
        skipped = torch.tensor(expected and not self._stepped, device=device)
        for flag in self._found_inf:
            skipped = skipped | flag.to(device)
        return skipped

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        losses = {name: value.detach() for name, value in (outputs or {}).items()
                  if 'loss' in name and isinstance(value, torch.Tensor)}
        device = next(iter(losses.values())).device if losses else torch.device('cpu')
        loss_bad = torch.stack([~torch.isfinite(value).all() for value in losses.values()]).any() \
            if losses else torch.tensor(False, device=device)
        grad_bad = torch.stack([~torch.isfinite(norm) for norm in self._grad_norms]).any() \
            if self._grad_norms else torch.tensor(False)
        flags = torch.stack([loss_bad.to(device), grad_bad.to(device),
                             self._skipped(runner, device)]).float()
        if get_world_size() > 1:
            all_reduce(flags, op='max')
        loss_bad, grad_bad, skipped = (value > 0 for value in flags.tolist())
        norms = [norm.item() for norm in self._grad_norms] if grad_bad else []
        expected_step = (not self._scaled or not isinstance(runner.optim_wrapper, OptimWrapper)
                         or runner.optim_wrapper.should_update())
        self._reset_step_record()

        if self._scaled:
            if skipped:
                self._skipped_in_a_row += 1
                if self._skipped_in_a_row >= self.max_skipped_steps:
                    scale = runner.optim_wrapper.loss_scaler.get_scale()
                    self._fail(runner, losses, loss_bad, norms,
                               f'{self._skipped_in_a_row} consecutive steps skipped by the loss '
                               f'scaler (gradients not finite; scale now {scale:g})')
                return
            if expected_step:
                self._skipped_in_a_row = 0
            if not loss_bad or not expected_step:
                return  # a non-finite loss while accumulating: the scaler skips the step
        elif not (loss_bad or grad_bad):
            return
        self._fail(runner, losses, loss_bad, norms, None)

    def _fail(self, runner, losses: dict, loss_bad: bool, norms: list[float],
              reason: str | None) -> None:
        terms = ', '.join(f'{name}={value.item():g}' for name, value in losses.items()
                          if not torch.isfinite(value).all())
        if get_world_size() > 1:
            found = all_gather_object(terms)
            terms = '; '.join(f'rank {rank}: {text}' for rank, text in enumerate(found) if text)
        parts = [reason] if reason else []
        if loss_bad:
            parts.append(f'non-finite loss terms {terms}')
        if norms and not all(math.isfinite(norm) for norm in norms):
            parts.append('gradient norm ' + ', '.join(f'{norm:g}' for norm in norms))
        message = (f'NonFiniteCheckHook: training stopped at iteration {runner.iter + 1}: '
                   f'{"; ".join(parts)}. No checkpoint of it was written; {_resume_hint(runner)}. '
                   'A resumed run repeats the same steps, so change what made them diverge '
                   'first (a lower learning rate, optim_wrapper.clip_grad, fp32 instead of '
                   'bf16/fp16).')
        print_log(message, logger='current', level=logging.WARNING)
        _stop_training(runner)
        raise NonFiniteTrainingError(message)


# -- stop signals -----------------------------------------------------------------------------
def _signal_number(value) -> signal.Signals:
    try:
        if isinstance(value, str):
            name = value.upper()
            return signal.Signals[name if name.startswith('SIG') else f'SIG{name}']
        return signal.Signals(value)
    except (KeyError, ValueError):
        raise ValueError(f'StopSignalHook: signals contains {value!r}, which is not a signal of '
                         "this system; use names such as 'SIGTERM' or 'SIGUSR1'") from None


def _exit_on_signal_from_parent(signals: tuple[int, ...]) -> None:
    while True:
        info = signal.sigwaitinfo(signals)
        if info.si_pid == os.getppid():
            # How PyTorch's own worker handler answers its main process's SIGTERM.
            os._exit(0)


class _IgnoreForeignStopSignals:
    """A DataLoader ``worker_init_fn`` (around the one it replaces) after which the worker
    ignores the stop signals unless its main process sends them.

    Slurm signals every process of a job step, DataLoader workers included, and PyTorch's
    worker handler lets a SIGTERM from anyone but the main process kill the worker; the main
    process's SIGCHLD handler then raises "DataLoader worker ... is killed by signal" at
    whatever line it is running, mid-iteration, so no checkpoint could be saved. Ignoring the
    signal outright is not enough: the main process stops its workers with SIGTERM when it
    exits (multiprocessing terminates daemonic children, then joins them), and a worker that
    ignored it would keep the process from exiting. So the worker blocks the signals (before
    it starts any thread, so all of its threads block them) and a thread takes them with
    ``sigwaitinfo``, exiting when the sender is its main process.
    """

    def __init__(self, init_fn, signals: tuple[int, ...]) -> None:
        self.init_fn = init_fn
        self.signals = signals

    def __call__(self, worker_id: int) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, self.signals)
        threading.Thread(target=_exit_on_signal_from_parent, args=(self.signals, ),
                         name='stop-signal-watch', daemon=True).start()
        if self.init_fn is not None:
            self.init_fn(worker_id)


class _NotCopied:
    """Deep-copies to the object it holds (``Runner.build_dataloader`` deep-copies its config;
    a dataset is shared, not copied)."""

    def __init__(self, obj) -> None:
        self.obj = obj

    def __deepcopy__(self, memo):
        return self.obj


def _restart_started_workers(runner, init_fn_wrapper) -> None:
    """Start again, with the wrapped ``worker_init_fn``, the DataLoader workers that mmengine
    0.10.7's ``IterBasedTrainLoop`` starts when it is built, before any hook runs
    (onedl-mmengine starts them at the first batch, after this hook's ``before_train``).

    The loop gets a new DataLoader over the same dataset, built as the Runner built the first:
    the first one's sampler has already been advanced by its workers' prefetching, and an
    infinite sampler keeps its position across iterators. The new one draws the same batches
    (its sampler and mmengine's ``worker_init_fn`` are seeded), and the torch generator from
    which a DataLoader iterator draws its base seed is put back as it was.
    """
    from mmengine.runner.loops import _InfiniteDataloaderIterator
    from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter
    loop = runner.train_loop
    started = getattr(getattr(loop, 'dataloader_iterator', None), '_iterator', None)
    if (not isinstance(started, _MultiProcessingDataLoaderIter)
            or isinstance(started._worker_init_fn, _IgnoreForeignStopSignals)):
        return
    config = getattr(runner, '_train_dataloader', None)
    if not isinstance(config, dict):
        print_log('StopSignalHook: the training DataLoader was built outside the Runner and '
                  'its workers started before training; a stop signal sent to them as well '
                  '(Slurm) ends the run without a checkpoint', logger='current',
                  level=logging.WARNING)
        return
    started._shutdown_workers()
    loader = runner.build_dataloader(
        dict(config, dataset=_NotCopied(loop.dataloader.dataset)), seed=runner.seed,
        diff_rank_seed=runner._randomness_cfg.get('diff_rank_seed', False))
    loader.worker_init_fn = init_fn_wrapper(loader.worker_init_fn)
    state = torch.get_rng_state()
    loop.dataloader = loader
    loop.dataloader_iterator = _InfiniteDataloaderIterator(loader)
    torch.set_rng_state(state)


def _rng_states() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return torch.get_rng_state(), cuda, np.random.get_state(), random.getstate()


def _set_rng_states(states: tuple) -> None:
    cpu, cuda, numpy_state, python_state = states
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
    np.random.set_state(numpy_state)
    random.setstate(python_state)


def _run_rest_of_epoch(loop, done: int) -> None:
    """``EpochBasedTrainLoop.run_epoch`` for an epoch resumed after ``done`` of its batches:
    mmengine resumes an epoch-based run only at an epoch's end, and would train the whole
    epoch again. The trained batches are loaded and discarded (the data workers' random
    streams then continue as in the uninterrupted run), and the batch indices the hooks see
    stay those of the uninterrupted run. The checkpoint's random states were saved after the
    epoch's data loader iterator drew its seed from them and, without workers, after the
    trained batches were loaded: the states that ``before_train_epoch`` restored
    (``RNGStateHook``) are put back after the iterator is made and the batches are skipped."""
    del loop.run_epoch  # later epochs run mmengine's own
    runner = loop.runner
    runner.call_hook('before_train_epoch')
    runner.model.train()
    states = _rng_states()
    batches = enumerate(loop.dataloader)
    for _ in range(done):
        next(batches)
    _set_rng_states(states)
    for idx, data_batch in batches:
        loop.run_iter(idx, data_batch)
    runner.call_hook('after_train_epoch')
    loop._epoch += 1


@HOOKS.register_module()
class StopSignalHook(Hook):
    """Save a resumable checkpoint and exit when the process is told to stop (SIGTERM).

    A signal only sets a flag; at the end of the iteration it arrived in (after the optimizer
    step, the scheduler step and :class:`NonFiniteCheckHook`, before ``CheckpointHook``) the
    run saves the checkpoint an interval would have saved there, writes ``last_checkpoint``
    and exits with status 128 + the signal number (143 for SIGTERM). ``--resume`` then
    continues as after an interval checkpoint, bitwise: the checkpoint holds the same state,
    RNG states included (``RNGStateHook``).

    * Iteration-based runs save through ``CheckpointHook`` (``iter_N.pth``, counted in its
      ``max_keep_ckpts``). Epoch-based runs save ``iter_N.pth`` with the epoch in progress,
      outside ``max_keep_ckpts``; mmengine resumes an epoch-based run only at an epoch's end,
      so this hook resumes one in mid-epoch, loading and discarding the batches it trained.
    * Distributed: every rank's flag is combined once per iteration (one ``all_reduce``), so
      all ranks stop after the same iteration whichever received the signal, and when (Slurm
      signals every process, torchrun forwards its own SIGTERM to the workers; a second signal
      changes nothing). Rank 0 saves; all ranks wait for it and exit together.
    * DataLoader workers ignore the signal unless their main process sends it (see
      :class:`_IgnoreForeignStopSignals`): Slurm signals them too.
    * A signal during validation is honoured after the next training iteration; one after the
      last iteration is passed on (the run is complete) once training ends.

    Python runs signal handlers in the main thread: a run started elsewhere is not guarded
    (and says so). mmengine's ``CheckpointHook`` saves only at intervals and has no stop
    request to react to, which is why this is a hook of its own.

    Args:
        signals: The signals that stop the run (names or numbers). Add ``'SIGUSR1'`` where the
            job script asks Slurm for it (``--signal=USR1@120``).
    """

    priority = 80  # after NonFiniteCheckHook (no checkpoint of NaN weights), before CheckpointHook

    def __init__(self, signals=('SIGTERM', )) -> None:
        if isinstance(signals, (str, int)):
            signals = (signals, )
        self.signals = tuple(_signal_number(value) for value in signals)
        if not self.signals:
            raise ValueError('StopSignalHook: signals is empty; name at least one, e.g. '
                             "('SIGTERM',)")
        self._previous: dict[signal.Signals, object] = {}
        self._received: int | None = None

    # signal handling
    def _on_signal(self, signum, frame) -> None:
        if self._received is None:
            self._received = signum

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            print_log('StopSignalHook: training runs outside the main thread, where Python '
                      'cannot catch signals; a stop signal ends it without a checkpoint',
                      logger='current', level=logging.WARNING)
            return
        self._received = None
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore_signal_handlers(self) -> None:
        """Give the signals back to the handlers they had before training."""
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self._previous = {}

    # training
    def before_train(self, runner) -> None:
        self._install()
        if hasattr(signal, 'sigwaitinfo'):  # not on macOS
            self._guard_workers(runner)
        loop = runner.train_loop
        if isinstance(loop, EpochBasedTrainLoop):
            length = len(loop.dataloader)
            done = loop.iter - loop.epoch * length
            if 0 < done <= length:
                print_log(f'StopSignalHook: resuming epoch {loop.epoch + 1} after {done} of its '
                          f'{length} batches (loading and discarding them)', logger='current')
                loop.run_epoch = functools.partial(_run_rest_of_epoch, loop, done)
            elif done != 0:
                print_log(f'StopSignalHook: the checkpoint is of iteration {loop.iter} in epoch '
                          f'{loop.epoch + 1}, which has {length} batches here (another batch '
                          'size or number of processes?); the epoch starts over',
                          logger='current', level=logging.WARNING)

    def _guard_workers(self, runner) -> None:
        signals = tuple(int(sig) for sig in self.signals)

        def wrap(init_fn):
            return init_fn if isinstance(init_fn, _IgnoreForeignStopSignals) else \
                _IgnoreForeignStopSignals(init_fn, signals)

        _restart_started_workers(runner, wrap)
        loaders = [runner.train_loop.dataloader]
        if runner.val_loop is not None:
            loaders.append(runner.val_loop.dataloader)
        for loader in loaders:
            if getattr(loader, 'num_workers', 0) > 0:
                loader.worker_init_fn = wrap(loader.worker_init_fn)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        received = self._received or 0
        if get_world_size() > 1:
            flag = torch.tensor([received], dtype=torch.int64)
            all_reduce(flag, op='max')
            received = int(flag.item())
        if not received:
            return
        name = signal.Signals(received).name
        iteration = runner.iter + 1
        print_log(f'StopSignalHook: {name} received; saving a checkpoint of iteration '
                  f'{iteration} before exiting', logger='current', level=logging.WARNING)
        path = self._save(runner)
        barrier()  # no rank exits (which a launcher may answer by killing the rest) before it
        print_log(f'StopSignalHook: stopped by {name} after iteration {iteration}; saved {path}. '
                  'Continue with tools/train.py CONFIG --resume (WORK_DIR/last_checkpoint '
                  f'points at it) or --resume {path}', logger='current', level=logging.WARNING)
        _stop_training(runner)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        raise SystemExit(128 + received)

    def _save(self, runner) -> str:
        checkpoint_hook = next((hook for hook in runner.hooks
                                if isinstance(hook, CheckpointHook)), None)
        if checkpoint_hook is not None and not checkpoint_hook.by_epoch:
            # Exactly what CheckpointHook writes at an interval (name, max_keep_ckpts,
            # last_checkpoint), through CheckpointWriteCheckHook when that is on.
            checkpoint_hook._save_checkpoint(runner)
            return checkpoint_hook.last_ckpt
        out_dir = checkpoint_hook.out_dir if checkpoint_hook is not None else runner.work_dir
        backend_args = getattr(checkpoint_hook, 'backend_args', None)
        filename = f'iter_{runner.iter + 1}.pth'
        path = join_path(out_dir, filename, backend_args=backend_args)
        previous = _last_checkpoint(runner)
        runner.message_hub.update_info('last_ckpt', path)

        def write() -> None:
            runner.save_checkpoint(
                out_dir, filename,
                save_optimizer=getattr(checkpoint_hook, 'save_optimizer', True),
                save_param_scheduler=getattr(checkpoint_hook, 'save_param_scheduler', True),
                meta=dict(epoch=runner.epoch, iter=runner.iter + 1), by_epoch=False,
                backend_args=backend_args)
            if is_main_process():
                atomic_write(path.encode(), osp.join(runner.work_dir, 'last_checkpoint'))

        _checked_write(runner, write, path, previous)
        return path

    def after_train(self, runner) -> None:
        received, self._received = self._received, None
        self.restore_signal_handlers()
        if received:
            print_log(f'StopSignalHook: {signal.Signals(received).name} arrived after the last '
                      'training iteration; training is complete, passing the signal on',
                      logger='current', level=logging.WARNING)
            signal.raise_signal(received)


# -- checkpoint writes ------------------------------------------------------------------------
class _DeferredRemovals:
    """A file backend whose ``remove``/``rmtree`` wait until :meth:`apply`."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.pending: list[tuple[str, str]] = []

    def remove(self, path) -> None:
        self.pending.append(('remove', path))

    def rmtree(self, path) -> None:
        self.pending.append(('rmtree', path))

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def apply(self) -> None:
        for operation, path in self.pending:
            getattr(self.backend, operation)(path)


def _checked_write(runner, write, target: str, previous: str | None) -> None:
    """Run ``write`` on every rank (rank 0 writes); if it fails on any, every rank raises
    :class:`CheckpointWriteError` naming ``target`` and the checkpoint still in force."""
    try:
        write()
        error = None
    except Exception as exc:  # whatever failed (disk, folder, pickling), nothing was written
        error = exc
    message = None if error is None else f'{type(error).__name__}: {error}'
    if get_world_size() > 1:
        found = all_gather_object(message)
        message = '; '.join(f'rank {rank}: {text}' for rank, text in enumerate(found) if text)
    if not message:
        return
    runner.message_hub.update_info('last_ckpt', previous)
    kept = (f'the previous checkpoint {previous} is intact and WORK_DIR/last_checkpoint still '
            'points at it' if previous else 'no earlier checkpoint exists')
    text = (f'CheckpointWriteCheckHook: could not write checkpoint {target} at iteration '
            f'{runner.iter + 1} ({message}); training stopped, {kept}. Make room or fix the '
            'folder, then continue with tools/train.py CONFIG --resume')
    print_log(text, logger='current', level=logging.WARNING)
    _stop_training(runner)
    raise CheckpointWriteError(text) from error


@HOOKS.register_module()
class CheckpointWriteCheckHook(Hook):
    """Stop every rank when a checkpoint cannot be written, keeping the checkpoint that
    ``last_checkpoint`` points at.

    Wraps the saving methods of the run's ``CheckpointHook`` (mmengine's, which still decides
    when and what to save): a write that fails (disk full, a read-only or vanished folder)
    raises :class:`CheckpointWriteError` on every rank, naming the file and the error, and the
    run stops. Writes are atomic (:mod:`.atomic_io`), so no partial file is left. What
    ``CheckpointHook`` does not do itself:

    * it deletes the checkpoint that falls out of ``max_keep_ckpts`` (and the previous best
      one) *before* writing the new one; with ``max_keep_ckpts=1`` a failed write would leave
      no checkpoint at all. Here the deletions wait until the new checkpoint and its pointer
      are written.
    * a failed write raises on rank 0 only (the only one writing), and the other ranks wait in
      their next collective until a timeout; here every rank raises.
    """

    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and not getattr(hook, '_write_checked', False):
                for name in ('_save_checkpoint_with_step', '_save_best_checkpoint'):
                    if not hasattr(hook, name):
                        print_log(f'CheckpointWriteCheckHook: {type(hook).__name__} has no '
                                  f'{name}; its writes are not checked', logger='current',
                                  level=logging.WARNING)
                        continue
                    setattr(hook, name, self._checked(hook, getattr(hook, name),
                                                      by_step=name == '_save_checkpoint_with_step'))
                hook._write_checked = True

    @staticmethod
    def _checked(hook: CheckpointHook, save, by_step: bool):
        @functools.wraps(save)
        def checked_save(runner, *args, **kwargs):
            if isinstance(hook.file_backend, _DeferredRemovals):  # called from the other one
                return save(runner, *args, **kwargs)
            previous, previous_path = _last_checkpoint(runner), hook.last_ckpt
            target = (hook.file_backend.join_path(hook.out_dir, hook.filename_tmpl.format(args[0]))
                      if by_step else f'(the new best checkpoint) in {hook.out_dir}')
            deferred = _DeferredRemovals(hook.file_backend)
            hook.file_backend = deferred

            def write() -> None:
                try:
                    save(runner, *args, **kwargs)
                finally:
                    hook.file_backend = deferred.backend

            try:
                _checked_write(runner, write, target, previous)
            except CheckpointWriteError:
                hook.last_ckpt = previous_path
                raise
            if is_main_process():
                deferred.apply()
        return checked_save
