"""mmengine checkpoints load and resume under torch's weights_only=True default, and pickles that
would run code are still refused."""
import os
import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn
from torch.utils.data import Dataset

import convnext_dense  # noqa: F401  (applies the allow-list)
from convnext_dense.engine import UnsafeCheckpointError, read_checkpoint


class TinyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, x, y, mode='loss'):
        return dict(loss=((self.linear(x) - y)**2).mean())


class TinyData(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        return dict(x=torch.randn(2, generator=generator), y=torch.randn(1, generator=generator))


def make_runner(work_dir, max_epochs, **kwargs):
    return Runner(
        model=TinyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=TinyData(), batch_size=4, collate_fn=dict(
            type='default_collate'), sampler=dict(type='DefaultSampler', shuffle=False)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0), **kwargs)


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('runner')
    make_runner(work_dir, max_epochs=1).train()
    return work_dir


def test_runner_checkpoint_needs_the_allow_list(runner_checkpoint):
    path = str(runner_checkpoint / 'epoch_1.pth')
    allowed = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path, weights_only=True)
    finally:
        torch.serialization.add_safe_globals(allowed)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in unsafe
    assert 'builtins.getattr' in unsafe
    checkpoint = torch.load(path, weights_only=True)
    assert 'message_hub' in checkpoint and 'state_dict' in checkpoint
    buffer = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and len(buffer.data[0]) > 0


def test_resume_from_runner_checkpoint(runner_checkpoint, tmp_path):
    resumed = make_runner(runner_checkpoint, max_epochs=2, resume=True)
    resumed.train()
    assert resumed.epoch == 2
    assert (runner_checkpoint / 'epoch_2.pth').is_file()


class RunsCode:
    def __reduce__(self):
        return (os.system, ('touch pwned',))


class ReachesAttributes:
    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


@pytest.mark.parametrize('payload', [RunsCode(), ReachesAttributes()])
def test_code_running_pickle_refused(tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': payload}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load '.*evil\.pth'.*"
                       r'weights_only=False'):
        read_checkpoint(str(path))
    # mmengine's own loading (Runner.resume / load_from) goes through the same check
    with pytest.raises(UnsafeCheckpointError, match='refusing to load'):
        _load_checkpoint(str(path), map_location='cpu')
    assert not (tmp_path / 'pwned').exists()


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_text('this is not a checkpoint\n')
    with pytest.raises(ValueError, match=r"'.*notes\.pth' is not a PyTorch checkpoint"):
        read_checkpoint(str(path))


def test_truncated_checkpoint(runner_checkpoint, tmp_path):
    data = (runner_checkpoint / 'epoch_1.pth').read_bytes()
    path = tmp_path / 'truncated.pth'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match='truncated'):
        read_checkpoint(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        read_checkpoint(str(tmp_path / 'missing.pth'))


def test_legacy_pickle_file_refused(tmp_path):
    path = tmp_path / 'legacy.pkl'
    with open(path, 'wb') as f:
        pickle.dump({'w': RunsCode()}, f)
    with pytest.raises((UnsafeCheckpointError, ValueError), match='legacy.pkl'):
        read_checkpoint(str(path))
