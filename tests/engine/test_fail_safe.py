"""Long runs that fail safe (convnext_dense/engine/fail_safe.py), each guard tested by doing it:
a loss or gradient made NaN at iteration k, a SIGTERM sent to a running training (the process and
its DataLoader workers, as Slurm does; one rank of a 2-process gloo run; the tools), then
``--resume`` compared bitwise with an uninterrupted run, and checkpoint writes into a folder that
has become a file or onto a name taken by a folder.

Most runs use a tiny model (a linear layer with dropout, data augmented in the DataLoader
workers) through mmengine's Runner, a fraction of a second each; the runs of the real tools are
one SIGTERM in the default suite and the rest marked ``slow``.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.runner import Runner
from torch import nn

import convnext_dense  # noqa: F401  (registers the hooks, atomic checkpoint writes)
from convnext_dense.engine import (
    CheckpointWriteError,
    NonFiniteCheckHook,
    NonFiniteTrainingError,
    StopSignalHook,
)
from convnext_dense.engine.run_config import prepare_train_cfg
from convnext_dense.fileio import atomic_open
from tests.helpers import ROOT, SEG_CONFIG, run_tool

GUARDS = ('NonFiniteCheckHook', 'StopSignalHook', 'CheckpointWriteCheckHook')


# -- a tiny training run ----------------------------------------------------------------------
class TinyModel(BaseModel):
    """A linear layer behind dropout (which draws from the torch generator, as stochastic depth
    does), two loss terms; ``poison`` makes the next forward's ``loss_l1`` or gradient NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.dropout = nn.Dropout(0.5)
        self.poison: str | None = None
        # built before the Runner seeds the generators: the same weights in every run
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=generator))

    def forward(self, inputs, targets, mode='tensor'):
        out = self.linear(self.dropout(inputs)).squeeze(1)
        if mode != 'loss':
            return out
        loss_l1 = (out - targets).abs().mean()
        if self.poison == 'loss':
            loss_l1 = loss_l1 * float('nan')
        elif self.poison == 'grad':  # a finite loss whose backward is NaN
            out.register_hook(lambda grad: grad * float('nan'))
        return dict(loss_mse=((out - targets) ** 2).mean().float(), loss_l1=loss_l1.float())


class TinyData(torch.utils.data.Dataset):
    """8 samples with noise drawn from numpy's global generator: in DataLoader workers that is
    the worker's (seeded by mmengine's worker_init_fn), so a resumed run matches only if the
    workers' random streams are replayed."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        x = torch.randn(4, generator=torch.Generator().manual_seed(index))
        x = x + torch.from_numpy(np.random.randn(4)).float() * 0.1
        return dict(inputs=x, targets=x.sum())


class AtIteration(Hook):
    """Calls ``action(runner)`` before the given iterations (1-based) of the first run."""

    priority = 'VERY_HIGH'

    def __init__(self, iterations, action) -> None:
        self.iterations = set(iterations)
        self.action = action

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter + 1 in self.iterations:
            self.action(runner)


class Poison(AtIteration):
    """Makes the loss (``'loss'``) or the gradient (``'grad'``) NaN at the given iterations."""

    def __init__(self, iterations, kind: str = 'loss') -> None:
        super().__init__(iterations, self._poison)
        self.kind = kind

    @staticmethod
    def _model(runner) -> TinyModel:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def _poison(self, runner) -> None:
        self._model(runner).poison = self.kind

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._model(runner).poison = None


class Record(Hook):
    """(epoch, batch index, iteration) of each trained iteration."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.seen.append((runner.epoch, batch_idx, runner.iter))


_RUNS = itertools.count()
_RUNNERS: list[Runner] = []


def tiny_runner(work_dir: Path, *, iters: int = 8, epochs: int | None = None, interval: int = 2,
                hooks=(), guards: bool = True, workers: int = 2, model=None,
                optim_wrapper=None, max_keep_ckpts: int = -1, out_dir=None, resume=False,
                launcher: str = 'none', non_finite: dict | None = None,
                signals=('SIGTERM', )) -> Runner:
    """A Runner of TinyModel, iteration-based (``iters``) or epoch-based (``epochs`` of 4
    iterations), checkpointing every ``interval`` iterations / epochs, with RNGStateHook (as the
    tools add it) and, with ``guards``, the three fail-safe hooks."""
    by_epoch = epochs is not None
    custom_hooks = [dict(type='RNGStateHook')]
    if guards:
        custom_hooks += [dict(type='NonFiniteCheckHook', **(non_finite or {})),
                         dict(type='StopSignalHook', signals=signals),
                         dict(type='CheckpointWriteCheckHook')]
    distributed = launcher != 'none'
    runner = Runner(
        model=model or TinyModel(),
        work_dir=str(work_dir),
        experiment_name=f'tiny_{os.getpid()}_{next(_RUNS)}',
        train_dataloader=dict(
            dataset=TinyData(), batch_size=2, num_workers=workers, persistent_workers=False,
            sampler=dict(type='DefaultSampler' if by_epoch else 'InfiniteSampler', shuffle=True),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=optim_wrapper or dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=6),
        train_cfg=dict(by_epoch=True, max_epochs=epochs) if by_epoch else
        dict(by_epoch=False, max_iters=iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=by_epoch, interval=interval,
                            max_keep_ckpts=max_keep_ckpts, out_dir=out_dir and str(out_dir)),
            logger=dict(type='LoggerHook', interval=1)),
        log_processor=dict(by_epoch=by_epoch),
        custom_hooks=[*custom_hooks, *hooks],
        randomness=dict(seed=0),
        resume=resume,
        launcher=launcher,
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        default_scope='mmengine',
        # CPU DDP (mmengine's default wrapper asks for a CUDA device), as the tools set it
        cfg=dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None,
                                        broadcast_buffers=False)) if distributed else None)
    _RUNNERS.append(runner)
    return runner


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)['state_dict']


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different, different


def pointer(work_dir: Path) -> str:
    return (work_dir / 'last_checkpoint').read_text().strip()


def data_workers(runner) -> list:
    """The DataLoader worker processes of an iteration-based run."""
    return runner.train_loop.dataloader_iterator._iterator._workers


def send_signal_to_training(runner, workers=None) -> list:
    """What Slurm does: SIGTERM to the training process and to its DataLoader workers, sent by
    another process (PyTorch's workers die of a SIGTERM from anyone but their parent)."""
    workers = data_workers(runner) if workers is None else workers
    subprocess.run(['kill', '-TERM', str(os.getpid()), *[str(w.pid) for w in workers]],
                   check=True)
    time.sleep(0.5)  # the signals are delivered, a dying worker would be noticed
    return workers


@pytest.fixture(autouse=True)
def _clean_up_runs():
    """A run that stops by raising leaves no handler of a finished hook behind, and the
    DataLoader workers of an iteration-based run are stopped now: when the garbage collector
    gets to a Runner (it references itself through its loops) the iterator's queues may be
    gone first, and each worker then takes PyTorch's 5 s join timeout to be killed."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    while _RUNNERS:
        loop = _RUNNERS.pop()._train_loop
        iterator = getattr(getattr(loop, 'dataloader_iterator', None), '_iterator', None)
        if hasattr(iterator, '_shutdown_workers'):
            iterator._shutdown_workers()


@pytest.fixture(scope='module')
def straight(tmp_path_factory) -> Path:
    """The uninterrupted iteration-based tiny run (8 iterations, checkpoints every 2)."""
    work_dir = tmp_path_factory.mktemp('straight')
    tiny_runner(work_dir).train()
    return work_dir


# -- non-finite loss and gradients ------------------------------------------------------------
def test_a_nan_loss_stops_the_run_before_its_checkpoint(tmp_path, straight):
    # iteration 4 is also a checkpoint iteration: its NaN weights must not be saved
    with pytest.raises(NonFiniteTrainingError) as error:
        tiny_runner(tmp_path, hooks=[Poison([4])]).train()
    message = str(error.value)
    assert 'training stopped at iteration 4: non-finite loss terms ' in message
    assert 'loss_l1=nan' in message and 'loss=nan' in message
    assert 'loss_mse' not in message  # the finite term is not named
    assert f'the last checkpoint is {tmp_path / "iter_2.pth"}' in message
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_2.pth']
    assert pointer(tmp_path) == str(tmp_path / 'iter_2.pth')
    # the checkpoint named is that of the uninterrupted run
    assert_same_weights(tmp_path / 'iter_2.pth', straight / 'iter_2.pth')


def test_a_nan_gradient_with_a_finite_loss_stops_the_run(tmp_path):
    with pytest.raises(NonFiniteTrainingError) as error:
        tiny_runner(tmp_path, hooks=[Poison([3], kind='grad')], workers=0).train()
    message = str(error.value)
    assert 'training stopped at iteration 3: gradient norm nan' in message
    assert 'non-finite loss' not in message
    # without the gradient check, the finite loss lets the run train on NaN weights
    with pytest.raises(NonFiniteTrainingError, match='iteration 4: non-finite loss terms'):
        tiny_runner(tmp_path / 'no_grad_check', hooks=[Poison([3], kind='grad')], workers=0,
                    non_finite=dict(check_grad_norm=False)).train()


def test_no_checkpoint_yet_is_said(tmp_path):
    with pytest.raises(NonFiniteTrainingError,
                       match='no checkpoint was written before it, so the run starts over'):
        tiny_runner(tmp_path, hooks=[Poison([1])], workers=0).train()


def cpu_amp_optim_wrapper(model, monkeypatch, fused: bool):
    """mmengine's AmpOptimWrapper (fp16 training's: scaled backward, skipped steps) on the CPU:
    built as on a GPU, with the CPU's GradScaler (mmengine's CUDA one disables itself without
    CUDA) and bf16 autocast (the CPU's)."""
    from mmengine.optim import AmpOptimWrapper
    from mmengine.optim.optimizer import amp_optimizer_wrapper
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available', lambda: True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, fused=True) if fused else \
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    wrapper = AmpOptimWrapper(optimizer=optimizer, loss_scale='dynamic', dtype='bfloat16')
    wrapper.loss_scaler = torch.amp.GradScaler('cpu')
    return wrapper


@pytest.mark.parametrize('fused', [False, True], ids=['sgd', 'fused_adamw'])
def test_amp_skipped_steps_are_not_failures_until_too_many(tmp_path, monkeypatch, fused):
    """A fused optimizer is stepped by the scaler even when it skips (it gets the scaler's
    found_inf flag); others are not stepped."""
    model = TinyModel()
    runner = tiny_runner(tmp_path / 'two', model=model, hooks=[Poison([3, 4])], workers=0,
                         optim_wrapper=cpu_amp_optim_wrapper(model, monkeypatch, fused),
                         non_finite=dict(max_skipped_steps=3))
    runner.train()  # two skipped steps in a row: the run completes
    assert runner.iter == 8
    scaler = runner.optim_wrapper.loss_scaler
    assert scaler.get_scale() < 2.0 ** 16  # it did skip (halving its scale)
    assert_same_weights(tmp_path / 'two/iter_2.pth', tmp_path / 'two/iter_4.pth')

    model = TinyModel()
    with pytest.raises(NonFiniteTrainingError) as error:
        tiny_runner(tmp_path / 'many', model=model, hooks=[Poison(range(3, 9))], workers=0,
                    optim_wrapper=cpu_amp_optim_wrapper(model, monkeypatch, fused),
                    non_finite=dict(max_skipped_steps=3)).train()
    assert ('training stopped at iteration 5: 3 consecutive steps skipped by the loss scaler'
            in str(error.value))
    assert 'loss_l1=nan' in str(error.value)


# -- stop signals -----------------------------------------------------------------------------
def test_sigterm_saves_and_resume_is_bitwise(tmp_path, straight):
    """SIGTERM to the process and its DataLoader workers at iteration 3: the run finishes the
    iteration, saves iter_3.pth, exits 143; the workers survive the signal; --resume ends with
    the uninterrupted run's weights. The guards themselves change nothing (a bare run)."""
    alive = []

    def signal_all(runner):
        workers = send_signal_to_training(runner)
        alive.extend(worker.is_alive() for worker in workers)

    work_dir = tmp_path / 'stopped'
    runner = tiny_runner(work_dir, hooks=[AtIteration([3], signal_all)])
    with pytest.raises(SystemExit) as stop:
        runner.train()
    del runner
    assert stop.value.code == 128 + signal.SIGTERM
    assert alive == [True, True]
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_2.pth', 'iter_3.pth']
    assert pointer(work_dir) == str(work_dir / 'iter_3.pth')
    assert torch.load(work_dir / 'iter_3.pth', weights_only=True)['meta']['iter'] == 3
    assert signal.getsignal(signal.SIGTERM) is not None  # given back

    tiny_runner(work_dir, resume=True).train()
    assert_same_weights(work_dir / 'iter_8.pth', straight / 'iter_8.pth')
    bare = tmp_path / 'bare'
    tiny_runner(bare, guards=False).train()
    assert_same_weights(bare / 'iter_8.pth', straight / 'iter_8.pth')


def test_unguarded_workers_die_of_a_foreign_sigterm(tmp_path, monkeypatch):
    """What the guard of the workers prevents: without it, the signal kills the DataLoader
    workers and the main process fails mid-iteration, without a checkpoint."""
    from convnext_dense.engine import fail_safe
    monkeypatch.delattr(fail_safe.signal, 'sigwaitinfo')
    # one worker: each death is reported once, at whatever line the main process is on
    runner = tiny_runner(tmp_path, hooks=[AtIteration(
        [3], lambda runner: send_signal_to_training(runner, data_workers(runner)[:1]))])
    with pytest.raises(RuntimeError, match=r'DataLoader worker \(pid \d+\) is killed by signal'):
        runner.train()
    assert not (tmp_path / 'iter_3.pth').exists()


@pytest.mark.parametrize('workers', [2, 0])
def test_sigterm_mid_epoch_resumes_mid_epoch(tmp_path, workers):
    """Epoch-based: stopped at iteration 6 (epoch 2, batch 2 of 4), resumed from there with the
    batch indices and data of the uninterrupted run (mmengine alone would repeat epoch 2).
    Without workers the data's random draws are the main process's, between the steps."""
    straight, record = tmp_path / 'straight', Record()
    tiny_runner(straight, epochs=3, interval=1, hooks=[record], workers=workers).train()

    work_dir, first, second = tmp_path / 'stopped', Record(), Record()
    with pytest.raises(SystemExit):
        tiny_runner(work_dir, epochs=3, interval=1, workers=workers, hooks=[
            first, AtIteration([6], lambda runner: os.kill(os.getpid(), signal.SIGTERM))
        ]).train()
    checkpoint = torch.load(work_dir / 'iter_6.pth', weights_only=True)
    assert (checkpoint['meta']['epoch'], checkpoint['meta']['iter']) == (1, 6)
    assert pointer(work_dir) == str(work_dir / 'iter_6.pth')
    tiny_runner(work_dir, epochs=3, interval=1, hooks=[second], resume=True,
                workers=workers).train()
    assert first.seen + second.seen == record.seen
    assert second.seen[0] == (1, 2, 6)
    assert_same_weights(work_dir / 'epoch_3.pth', straight / 'epoch_3.pth')


def test_signal_after_the_last_iteration_is_passed_on(tmp_path):
    """A signal the run had no iteration left to honour (here: during the last one's
    checkpoint) reaches the handler that was there before training."""
    received = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))

    class SignalWhileSaving(Hook):
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == 4:
                os.kill(os.getpid(), signal.SIGUSR1)

    runner = tiny_runner(tmp_path, iters=4, workers=0, hooks=[SignalWhileSaving()],
                         signals=('SIGUSR1', ))
    runner.train()
    assert received == [signal.SIGUSR1] and runner.iter == 4


def test_stop_signal_hook_arguments():
    assert StopSignalHook(signals='USR1').signals == (signal.SIGUSR1, )
    assert StopSignalHook(signals=('SIGTERM', int(signal.SIGUSR1))).signals == \
        (signal.SIGTERM, signal.SIGUSR1)
    with pytest.raises(ValueError, match="signals contains 'SIGNOPE'"):
        StopSignalHook(signals=('SIGNOPE', ))
    with pytest.raises(ValueError, match='max_skipped_steps=0'):
        NonFiniteCheckHook(max_skipped_steps=0)


def _worker(init_fn, ready) -> None:
    init_fn(0)
    ready.set()
    time.sleep(60)


def test_guarded_worker_exits_only_for_its_parent():
    from convnext_dense.engine.fail_safe import _IgnoreForeignStopSignals
    context = multiprocessing.get_context('fork')
    ready = context.Event()
    worker = context.Process(
        target=_worker, args=(_IgnoreForeignStopSignals(None, (int(signal.SIGTERM), )), ready),
        daemon=True)
    worker.start()
    assert ready.wait(30)
    subprocess.run(['kill', '-TERM', str(worker.pid)], check=True)  # not its parent: ignored
    worker.join(1)
    assert worker.is_alive()
    worker.terminate()  # SIGTERM from its parent, as DataLoader and multiprocessing stop it
    worker.join(10)
    assert worker.exitcode == 0


# -- checkpoint writes ------------------------------------------------------------------------
def test_checkpoint_folder_replaced_by_a_file(tmp_path, straight):
    """The checkpoint folder becomes a file (a lost mount, a disk full in all but name): the run
    stops at the checkpoint, the pointer keeps the previous one, and once the folder is back
    --resume ends with the uninterrupted run's weights."""
    work_dir, out_dir = tmp_path / 'work', tmp_path / 'out'
    folder = out_dir / 'work'  # CheckpointHook(out_dir) writes into out_dir/<work_dir name>

    def replace_folder(runner):
        folder.rename(tmp_path / 'moved')
        folder.write_text('not a folder')

    with pytest.raises(CheckpointWriteError) as error:
        tiny_runner(work_dir, out_dir=out_dir, hooks=[AtIteration([3], replace_folder)]).train()
    message = str(error.value)
    assert f'could not write checkpoint {folder / "iter_4.pth"} at iteration 4' in message
    assert f"NotADirectoryError: [Errno 20] the folder to write into is not a folder: '{folder}'" \
        in message
    assert (f'the previous checkpoint {folder / "iter_2.pth"} is intact and '
            'WORK_DIR/last_checkpoint still points at it') in message
    assert pointer(work_dir) == str(folder / 'iter_2.pth')

    folder.unlink()
    (tmp_path / 'moved').rename(folder)
    tiny_runner(work_dir, out_dir=out_dir, resume=True).train()
    assert_same_weights(folder / 'iter_8.pth', straight / 'iter_8.pth')


@pytest.mark.parametrize('guarded', [True, False])
def test_failed_write_keeps_the_previous_checkpoint(tmp_path, guarded):
    """max_keep_ckpts=1 and the write of iter_4.pth fails (a folder holds its name): mmengine's
    CheckpointHook alone has already deleted iter_2.pth, leaving nothing to resume from."""
    def block_name(runner):
        (tmp_path / 'iter_4.pth').mkdir()

    runner = tiny_runner(tmp_path, max_keep_ckpts=1, workers=0, guards=guarded,
                         hooks=[AtIteration([3], block_name)])
    with pytest.raises(CheckpointWriteError if guarded else IsADirectoryError):
        runner.train()
    assert (tmp_path / 'iter_2.pth').exists() == guarded
    assert pointer(tmp_path) == str(tmp_path / 'iter_2.pth')
    assert not list(tmp_path.glob('.*partial'))  # the atomic write left nothing behind


def test_last_checkpoint_pointer_is_written_atomically(tmp_path):
    from mmengine.hooks import checkpoint_hook
    assert checkpoint_hook.open is atomic_open  # CheckpointHook's only open() is the pointer's
    path = tmp_path / 'last_checkpoint'
    with atomic_open(path, 'w') as f:
        f.write('work_dirs/x/iter_2.pth')
    with pytest.raises(OSError):
        with atomic_open(path, 'w') as f:
            f.write('work_dirs/x/iter_4.pth')
            raise OSError(28, 'No space left on device')
    assert path.read_text() == 'work_dirs/x/iter_2.pth'
    assert not list(tmp_path.glob('.*partial'))
    with atomic_open(path) as f:  # reading is open()'s
        assert f.read() == 'work_dirs/x/iter_2.pth'


# -- on by default ----------------------------------------------------------------------------
@pytest.mark.parametrize('config', [  # a leaf config of each recipe, and the toy configs
    'mask_rcnn/mask_rcnn_convnext_t_coco_3x.py',
    'mask_rcnn/mask_rcnn_convnext_v2_b_fcmae_lsj_coco_3x.py', 'mask_rcnn/convnext_atto_toy.py',
    'upernet/convnext_t_ade20k.py', 'upernet/convnext_atto_toy.py'])
def test_configs_list_the_guards(config):
    hooks = Config.fromfile(str(ROOT / 'configs' / config)).custom_hooks
    assert [hook['type'] for hook in hooks][:3] == list(GUARDS)


def test_tools_add_the_guards(tmp_path, monkeypatch):
    from convnext_dense.engine import run_config
    monkeypatch.setattr(run_config, 'check_datasets', lambda cfg, loaders: None)  # no data here
    config = tmp_path / 'no_hooks.py'
    config.write_text(f"_base_ = ['{SEG_CONFIG}']\ncustom_hooks = []\n")
    cfg = prepare_train_cfg(str(config))
    types = [hook['type'] for hook in cfg.custom_hooks]
    assert all(guard in types for guard in GUARDS)


# -- distributed: 2 gloo processes ------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def torchrun(args, cwd, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=f'{ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                           f'--master_port={free_port()}', *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=timeout)


def _distributed_run(work_dir: str) -> None:
    """One rank of three 2-process tiny runs in a row; each outcome goes to
    work_dir/<run>/rank<R>.txt. Only rank 1's loss turns NaN (the gradient check is off, so
    rank 0 can learn of it only from rank 1); rank 0 (the one writing) cannot write iter_4.pth;
    only rank 1 receives SIGTERM."""
    import torch.distributed as dist
    dist.init_process_group('gloo')
    rank = dist.get_rank()

    def run(name, hooks, **options):
        outcome = 'completed'
        try:
            tiny_runner(Path(work_dir, name), workers=0, launcher='pytorch', hooks=hooks,
                        **options).train()
        except (NonFiniteTrainingError, CheckpointWriteError, SystemExit) as error:
            outcome = f'{type(error).__name__}: {error}'
            if isinstance(error, SystemExit):
                raise
        finally:
            Path(work_dir, name, f'rank{rank}.txt').write_text(outcome)

    run('nan', [Poison([3] if rank == 1 else [])], non_finite=dict(check_grad_norm=False))
    run('write', [AtIteration([3], lambda runner: rank == 0 and Path(
        work_dir, 'write', 'iter_4.pth').mkdir())])
    run('signal', [AtIteration([3], lambda runner: rank == 1 and os.kill(os.getpid(),
                                                                          signal.SIGTERM))])


def test_distributed_ranks_stop_together(tmp_path):
    result = torchrun([__file__, tmp_path], cwd=ROOT)
    assert result.returncode != 0
    log = result.stdout[-2000:] + result.stderr[-2000:]
    outcomes = [(tmp_path / 'nan' / f'rank{rank}.txt').read_text() for rank in (0, 1)]
    for outcome in outcomes:
        assert outcome.startswith('NonFiniteTrainingError: '), log
        assert 'iteration 3: non-finite loss terms rank 1: loss=nan, loss_l1=nan' in outcome
        assert 'rank 0' not in outcome
    assert sorted(p.name for p in (tmp_path / 'nan').glob('*.pth')) == ['iter_2.pth']

    outcomes = [(tmp_path / 'write' / f'rank{rank}.txt').read_text() for rank in (0, 1)]
    for outcome in outcomes:
        assert outcome.startswith('CheckpointWriteError: ') and 'rank 0: IsADirectoryError' \
            in outcome, log
    assert pointer(tmp_path / 'write') == str(tmp_path / 'write' / 'iter_2.pth')

    stopped = tmp_path / 'signal'
    outcomes = [(stopped / f'rank{rank}.txt').read_text() for rank in (0, 1)]
    assert outcomes == ['SystemExit: 143'] * 2, log
    assert sorted(p.name for p in stopped.glob('*.pth')) == ['iter_2.pth', 'iter_3.pth']
    assert pointer(stopped) == str(stopped / 'iter_3.pth')


# -- the tools --------------------------------------------------------------------------------
def seg_options(iters: int, interval: int) -> list[str]:
    """The toy UperNet on 64x64 crops, 2 images a batch: a fraction of the demo's step."""
    return ['--cfg-options', f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={interval}', 'default_hooks.logger.interval=1',
            'default_hooks.checkpoint.max_keep_ckpts=-1', 'randomness.seed=0',
            'randomness.deterministic=True', 'model.backbone.drop_path_rate=0.2',
            'train_dataloader.batch_size=2', 'model.data_preprocessor.size=(64,64)',
            'train_dataloader.dataset.pipeline.3.crop_size=(64,64)']


def start_training(command: list, cwd: Path, env=None) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, env=env)


def signal_group_after(process: subprocess.Popen, checkpoint: Path, timeout=600) -> str:
    """SIGTERM to the whole process group (the tool, its DataLoader workers; with torchrun the
    launcher and every rank), as Slurm signals a job step, once ``checkpoint`` exists."""
    deadline = time.time() + timeout
    while not checkpoint.exists():
        assert process.poll() is None, 'training ended first:\n' + process.stdout.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGTERM)
    output, _ = process.communicate(timeout=timeout)
    return output


def stopped_iteration(work_dir: Path, output: str) -> int:
    name = Path(pointer(work_dir)).name
    assert name.startswith('iter_'), name
    iteration = int(name[5:-4])
    assert f'stopped by SIGTERM after iteration {iteration}; saved' in output, output[-3000:]
    assert 'DataLoader worker' not in output, output[-3000:]
    return iteration


def test_tool_saves_on_sigterm(workspace):
    """tools/train.py (which adds the guards) with its process group signalled: it finishes
    the iteration, saves it and exits 143, its DataLoader workers untouched."""
    work_dir = workspace / 'sigterm'
    process = start_training([sys.executable, ROOT / 'tools/train.py', SEG_CONFIG, '--work-dir',
                              work_dir, *seg_options(40, 2)], cwd=workspace)
    output = signal_group_after(process, work_dir / 'iter_2.pth')
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    iteration = stopped_iteration(work_dir, output)
    assert 2 < iteration < 40
    meta = torch.load(work_dir / f'iter_{iteration}.pth', weights_only=True)['meta']
    assert meta['iter'] == iteration


@pytest.mark.slow
def test_tool_resumes_bitwise_after_sigterm(workspace):
    iters, options = 10, seg_options(10, 2)
    straight = workspace / 'tool_straight'
    run_tool([ROOT / 'tools/train.py', SEG_CONFIG, '--work-dir', straight, *options],
             cwd=workspace)
    work_dir = workspace / 'tool_stopped'
    process = start_training([sys.executable, ROOT / 'tools/train.py', SEG_CONFIG, '--work-dir',
                              work_dir, *options], cwd=workspace)
    output = signal_group_after(process, work_dir / 'iter_2.pth')
    assert process.returncode == 143, output[-3000:]
    assert stopped_iteration(work_dir, output) < iters
    run_tool([ROOT / 'tools/train.py', SEG_CONFIG, '--work-dir', work_dir, '--resume',
              *options], cwd=workspace)
    assert_same_weights(work_dir / f'iter_{iters}.pth', straight / f'iter_{iters}.pth')


@pytest.mark.slow
def test_torchrun_resumes_bitwise_after_sigterm(workspace):
    """2 gloo processes under torchrun (tools/dist_train.sh), its process group signalled:
    torchrun forwards SIGTERM to the ranks, which got it already; both stop after the same
    iteration, rank 0 saves, and a resumed 2-process run ends as the uninterrupted one."""
    iters, options = 10, seg_options(10, 2)

    def dist_train(work_dir, *extra):
        env = dict(os.environ, PORT=str(free_port()), PYTHON=sys.executable,
                   OMP_NUM_THREADS='1')
        return ['bash', ROOT / 'tools/dist_train.sh', SEG_CONFIG, '2', '--work-dir', work_dir,
                *extra, *options], env

    straight = workspace / 'dist_straight'
    command, env = dist_train(straight)
    result = subprocess.run(command, cwd=workspace, capture_output=True, text=True, env=env,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    work_dir = workspace / 'dist_stopped'
    command, env = dist_train(work_dir)
    process = start_training(command, workspace, env=env)
    output = signal_group_after(process, work_dir / 'iter_2.pth')
    assert process.returncode != 0
    assert stopped_iteration(work_dir, output) < iters
    command, env = dist_train(work_dir, '--resume')
    result = subprocess.run(command, cwd=workspace, capture_output=True, text=True, env=env,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_same_weights(work_dir / f'iter_{iters}.pth', straight / f'iter_{iters}.pth')


NAN_HOOK = '''
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class NaNDecodeHeadHook(Hook):
    """The decode head's output NaN at one iteration: decode.loss_ce becomes NaN."""

    def __init__(self, iteration):
        self.iteration = iteration

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        head = runner.model.decode_head
        if runner.iter + 1 == self.iteration:
            forward = type(head).forward
            head.forward = lambda inputs: forward(head, inputs) * float('nan')
        elif 'forward' in vars(head):
            del head.forward
'''


@pytest.mark.slow
def test_tool_stops_at_a_nan_loss(workspace):
    (workspace / 'nan_hook.py').write_text(NAN_HOOK)
    config = workspace / 'seg_nan.py'
    imports = [*Config.fromfile(SEG_CONFIG).custom_imports.imports, 'nan_hook']
    config.write_text(f"_base_ = ['{SEG_CONFIG}']\n"
                      f'custom_imports = dict(imports={imports!r}, allow_failed_imports=False)\n'
                      "custom_hooks = [dict(type='NaNDecodeHeadHook', iteration=3)]\n")
    work_dir = workspace / 'nan'
    env = dict(os.environ, PYTHONPATH=str(workspace))
    result = run_tool([ROOT / 'tools/train.py', config, '--work-dir', work_dir,
                       *seg_options(6, 2)], cwd=workspace, check=False, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert 'NonFiniteTrainingError: NonFiniteCheckHook: training stopped at iteration 3: ' \
           'non-finite loss terms loss=nan, decode.loss_ce=nan; gradient norm nan.' in output, \
        output[-3000:]  # not aux.loss_ce, which stays finite
    assert f'the last checkpoint is {work_dir / "iter_2.pth"}' in output
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_2.pth']


if __name__ == '__main__':  # one rank of test_distributed_ranks_stop_together (under torchrun)
    _distributed_run(sys.argv[1])
