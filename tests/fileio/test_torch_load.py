"""mmengine checkpoints load and resume under torch's weights_only=True default, and pickles that
would run code are still refused, through every way mmengine loads a checkpoint (on
onedl-mmengine too, whose loader falls back to weights_only=False)."""
import io
import os
import pickle
import shlex

import mmengine.runner.checkpoint as mmengine_checkpoint
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel, BaseModule
from mmengine.runner import Runner
from mmengine.runner.checkpoint import (
    CheckpointLoader,
    _load_checkpoint,
    _load_checkpoint_with_prefix,
    load_checkpoint,
)
from torch import nn
from torch.utils.data import Dataset

import convnext_dense  # noqa: F401  (applies the allow-list)
from convnext_dense.fileio import UnsafeCheckpointError, read_checkpoint
from convnext_dense.models import ConvNeXt


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


class CreatesFile:
    """Pickles as ``os.system('touch MARKER')``: loading it without the allow-list runs it."""

    def __init__(self, marker):
        self.command = f'touch {shlex.quote(str(marker))}'

    def __reduce__(self):
        return (os.system, (self.command,))


class FakeObjectStore:
    def __init__(self, data: bytes):
        self.data = data

    def get(self, filepath):
        return self.data


def _pretrained_module(path, prefix=None):
    module = BaseModule(init_cfg=dict(type='Pretrained', checkpoint=path, prefix=prefix))
    module.backbone = nn.Linear(2, 1)
    module.init_weights()


def _resume(path, tmp_path):
    runner = make_runner(tmp_path / 'work', max_epochs=1)
    runner.resume(path)


# Every way mmengine and the plugin read a checkpoint from a path or an object store.
LOADERS = {
    'load_checkpoint': lambda path, tmp_path: load_checkpoint(TinyModel(), path),
    '_load_checkpoint': lambda path, tmp_path: _load_checkpoint(path, map_location='cpu'),
    'CheckpointLoader': lambda path, tmp_path: CheckpointLoader.load_checkpoint(path),
    '_load_checkpoint_with_prefix':
        lambda path, tmp_path: _load_checkpoint_with_prefix('backbone.', path),
    'Pretrained init_cfg': lambda path, tmp_path: _pretrained_module(path),
    'Pretrained init_cfg with prefix':
        lambda path, tmp_path: _pretrained_module(path, prefix='backbone.'),
    'ConvNeXt Pretrained init_cfg': lambda path, tmp_path: ConvNeXt(
        arch='atto', init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights(),
    'Runner.load_checkpoint (load_from)':
        lambda path, tmp_path: make_runner(tmp_path / 'work', max_epochs=1).load_checkpoint(path),
    'Runner.resume': _resume,
}


@pytest.fixture
def code_carrying_checkpoint(tmp_path):
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'backbone.weight': torch.zeros(1, 2)},
                'meta': CreatesFile(marker)}, path)
    yield path, marker
    assert not marker.exists(), 'loading the checkpoint ran its code'


@pytest.mark.parametrize('loader', LOADERS)
def test_code_carrying_checkpoint_refused_by_every_loader(code_carrying_checkpoint, tmp_path,
                                                          loader):
    path, marker = code_carrying_checkpoint
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load '.*evil\.pth'"):
        LOADERS[loader](str(path), tmp_path)
    assert not marker.exists()


def test_code_carrying_checkpoint_refused_from_mmengine_home(code_carrying_checkpoint, tmp_path,
                                                              monkeypatch):
    """``open-mmlab://NAME`` naming a file in MMENGINE_HOME is read by mmengine itself (onedl:
    ``_safe_torch_load``, which falls back to weights_only=False unless the plugin removed it)."""
    path, marker = code_carrying_checkpoint
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path))
    monkeypatch.setattr(mmengine_checkpoint, 'get_external_models', lambda: {'evil': path.name})
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint('open-mmlab://evil', map_location='cpu')
    assert not marker.exists()


def test_code_carrying_checkpoint_refused_from_object_store(code_carrying_checkpoint,
                                                            monkeypatch):
    """``s3://`` checkpoints are read from an in-memory buffer by mmengine itself."""
    path, marker = code_carrying_checkpoint
    store = FakeObjectStore(path.read_bytes())
    monkeypatch.setattr(mmengine_checkpoint, 'get_file_backend', lambda *args, **kwargs: store)
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint('s3://bucket/evil.pth', map_location='cpu')
    assert not marker.exists()


@pytest.mark.skipif(not hasattr(mmengine_checkpoint, '_safe_torch_load'),
                    reason='mmengine 0.10.7 has no _safe_torch_load (onedl-mmengine >= 0.10.8)')
@pytest.mark.parametrize('source', ['path', 'stream'])
def test_onedl_fallback_to_unsafe_load_removed(code_carrying_checkpoint, source):
    path, marker = code_carrying_checkpoint
    file = str(path) if source == 'path' else io.BytesIO(path.read_bytes())
    with pytest.raises(UnsafeCheckpointError, match='refusing to load'):
        mmengine_checkpoint._safe_torch_load(file, map_location='cpu')
    assert not marker.exists()
    # and its weights-only attempt no longer allow-lists builtins.getattr for everything
    reaching = io.BytesIO()
    torch.save({'meta': ReachesAttributes()}, reaching)
    reaching.seek(0)
    with pytest.raises(UnsafeCheckpointError):
        mmengine_checkpoint._safe_torch_load(reaching, map_location='cpu')


def test_safe_checkpoints_still_load_through_mmengine(runner_checkpoint, tmp_path, monkeypatch):
    path = runner_checkpoint / 'epoch_1.pth'
    assert 'message_hub' in _load_checkpoint(str(path), map_location='cpu')
    store = FakeObjectStore(path.read_bytes())
    monkeypatch.setattr(mmengine_checkpoint, 'get_file_backend', lambda *args, **kwargs: store)
    assert 'message_hub' in _load_checkpoint('s3://bucket/epoch_1.pth', map_location='cpu')
