"""RNGStateHook: a resumed run draws the random numbers the uninterrupted run draws, whatever
device mmengine's map_location brings the checkpoint's tensors to (the current GPU, when
resuming on one), with fewer CUDA devices than the checkpoint has states for, and from
checkpoints of the earlier layout (the states as tensors)."""
from __future__ import annotations

import io
import random

import mmengine.runner.runner as mmengine_runner
import numpy as np
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import convnext_dense  # noqa: F401  (registers the hook, allows the checkpoints' types)
from convnext_dense.engine import RNGStateHook
from tests.helpers import LogRecords


class DrawingModel(BaseModel):
    """Each training step draws from the torch, numpy and python generators, as stochastic
    depth and host-side sampling do, and records the draws."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.draws = []

    def forward(self, x, y, mode='loss'):
        self.draws.append((torch.rand(()).item(), float(np.random.rand()), random.random()))
        return dict(loss=((self.linear(x) - y)**2).mean())


class TinyData(Dataset):
    def __init__(self, length: int = 8):
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        return dict(x=torch.randn(2, generator=generator), y=torch.randn(1, generator=generator))


def make_runner(work_dir, max_iters: int, by_epoch: bool = False, **kwargs) -> Runner:
    """Checkpoints every 2 iterations; epoch-based: epochs of 2 iterations (4 samples)."""
    if by_epoch:
        loader = dict(dataset=TinyData(4), sampler=dict(type='DefaultSampler', shuffle=True))
        loop = dict(by_epoch=True, max_epochs=max_iters // 2)
    else:
        loader = dict(dataset=TinyData(), sampler=dict(type='InfiniteSampler', shuffle=False))
        loop = dict(by_epoch=False, max_iters=max_iters)
    return Runner(
        model=DrawingModel(), work_dir=str(work_dir),
        train_dataloader=dict(**loader, batch_size=2, num_workers=0,
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)), train_cfg=loop,
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1 if by_epoch else 2,
                                           by_epoch=by_epoch),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='RNGStateHook')],
        randomness=dict(seed=0), **kwargs)


def _on_meta(value):
    if isinstance(value, torch.Tensor):
        return value.to('meta')
    if isinstance(value, dict):
        return {key: _on_meta(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_meta(item) for item in value)
    return value


@pytest.mark.parametrize('by_epoch', [False, True], ids=['iter_loop', 'epoch_loop'])
@pytest.mark.parametrize('states_device', ['cpu', 'meta'])
def test_resume_draws_what_the_uninterrupted_run_draws(tmp_path, monkeypatch, states_device,
                                                       by_epoch):
    """4 iterations straight, against 2 then a resume for 2 more, in an iteration-based loop
    and in an epoch-based one (whose second epoch's data loader iterator draws its seed from
    torch's generator after the checkpoint was saved). Resuming on a GPU, mmengine loads the
    checkpoint with map_location set to the GPU, and torch.set_rng_state refuses a CUDA
    tensor; 'meta' stands for it here: whatever tensors the checkpoint's RNG states hold arrive
    on another device than the CPU."""
    straight = make_runner(tmp_path / 'straight', max_iters=4, by_epoch=by_epoch)
    straight.train()
    expected = straight.model.draws[2:]
    assert len(straight.model.draws) == 4 and len(set(expected)) == 2

    make_runner(tmp_path / 'resumed', max_iters=2, by_epoch=by_epoch).train()
    load = mmengine_runner._load_checkpoint

    def load_states_elsewhere(*args, **kwargs):
        checkpoint = load(*args, **kwargs)
        if states_device == 'meta':
            checkpoint['rng_state'] = _on_meta(checkpoint['rng_state'])
        return checkpoint

    monkeypatch.setattr(mmengine_runner, '_load_checkpoint', load_states_elsewhere)
    resumed = make_runner(tmp_path / 'resumed', max_iters=4, by_epoch=by_epoch, resume=True)
    resumed.train()
    assert resumed.model.draws == expected


def _round_trip(checkpoint: dict, map_location='cpu') -> dict:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True, map_location=map_location)


def test_fewer_cuda_devices_than_saved(monkeypatch):
    """A checkpoint of a process that saw 2 GPUs, resumed by one that sees 1 (torch's
    set_rng_state_all would stop at the missing device: 'invalid device ordinal'): the
    state of device 0 is restored, and the mismatch logged. torch.cuda's functions are
    stand-ins here."""
    saved = [torch.arange(16, dtype=torch.uint8) + 16 * i for i in range(2)]
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_rng_state_all', lambda: [s.clone() for s in saved])
    hook = RNGStateHook()
    checkpoint = {}
    hook.before_save_checkpoint(None, checkpoint)

    restored = []

    def set_rng_state(state, device='cuda'):
        index = torch.device('cuda', device).index if isinstance(device, int) else \
            (torch.device(device).index or 0)
        if index >= 1:
            raise RuntimeError('CUDA error: invalid device ordinal')
        restored.append((index, state.clone()))

    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    monkeypatch.setattr(torch.cuda, 'set_rng_state', set_rng_state)
    monkeypatch.setattr(torch.cuda.random, 'set_rng_state', set_rng_state)  # set_rng_state_all's
    hook.after_load_checkpoint(None, _round_trip(checkpoint))
    with LogRecords() as messages:
        hook.before_train_iter(None, 0)
    assert len(restored) == 1 and restored[0][0] == 0
    assert torch.equal(restored[0][1], saved[0])
    assert any('CUDA RNG states of 2 devices and this process sees 1' in m for m in messages)


def test_checkpoints_with_tensor_states_still_restore():
    """The earlier layout (torch state, numpy keys and python state as tensors) restores the
    same generator states."""
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    torch_state, numpy_state, python_state = (torch.get_rng_state(), np.random.get_state(),
                                              random.getstate())
    name, keys, pos, has_gauss, cached = numpy_state
    version, internal, gauss = python_state
    legacy = dict(rng_state=dict(
        torch=torch_state.clone(), cuda=[],
        numpy=dict(name=name, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                   has_gauss=int(has_gauss), cached=float(cached)),
        python=dict(version=version, internal=torch.tensor(internal, dtype=torch.int64),
                    gauss=gauss)))
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    hook = RNGStateHook()
    hook.after_load_checkpoint(None, _round_trip(legacy))
    hook.before_train_iter(None, 0)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]
