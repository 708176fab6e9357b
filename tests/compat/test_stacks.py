"""The two supported OpenMMLab stacks (OpenMMLab's releases and the OneDL forks) are told apart,
never mixed, and behave the same where the plugin relies on them."""
import configparser
import importlib.metadata
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from mmengine.config import Config
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.utils import is_installed

import convnext_dense  # noqa: F401  (applies the compat fixes)
from convnext_dense.compat import stacks
from convnext_dense.compat.stacks import (
    STACK_DISTRIBUTIONS,
    installed_stack,
    replay_skipped_batches,
)


def test_installed_stack_is_whole():
    stack = installed_stack()
    assert stack in STACK_DISTRIBUTIONS
    other = next(name for name in STACK_DISTRIBUTIONS if name != stack)
    assert all(stacks._installed(name) for name in STACK_DISTRIBUTIONS[stack][:4])
    assert not any(stacks._installed(name) for name in STACK_DISTRIBUTIONS[other])


ROOT = Path(__file__).resolve().parents[2]


def _extra_pins(extra: str) -> dict[str, str]:
    setup = configparser.ConfigParser()
    setup.read(ROOT / 'setup.cfg')
    lines = setup['options.extras_require'][extra].split('\n')
    return dict(line.split('==') for line in lines if '==' in line)


def test_the_venv_has_the_pinned_stack():
    stack = installed_stack()
    pins = _extra_pins(stack) | _extra_pins(f'tests-{stack}')
    assert set(pins) == set(STACK_DISTRIBUTIONS[stack])
    assert {name: importlib.metadata.version(name) for name in pins} == pins


@pytest.mark.parametrize('stack', sorted(STACK_DISTRIBUTIONS))
def test_setup_script_builds_the_pinned_mmcv(stack):
    script = (ROOT / 'tools/setup_env.sh').read_text()
    dist, version = re.search(rf'^  {stack}\)\n    MMCV_DIST=(\S+) MMCV_VERSION=(\S+) ', script,
                              re.MULTILINE).groups()
    assert _extra_pins(stack)[dist] == version


def _pretend_installed(monkeypatch, names):
    monkeypatch.setattr(stacks, '_installed', lambda name: name in names)


def test_mixed_stacks_refused(monkeypatch):
    _pretend_installed(monkeypatch, {*STACK_DISTRIBUTIONS['onedl'][:4], 'mmdet'})
    with pytest.raises(ImportError, match=r'both OpenMMLab stacks.*mmdet.*onedl-mmcv'):
        installed_stack()


def test_incomplete_stack_refused(monkeypatch):
    _pretend_installed(monkeypatch, {'onedl-mmengine', 'onedl-mmcv', 'onedl-mmdetection'})
    with pytest.raises(ImportError, match=r'onedl.*lacks onedl-mmsegmentation.*\[onedl\]'):
        installed_stack()
    _pretend_installed(monkeypatch, set())
    with pytest.raises(ImportError, match='no OpenMMLab stack'):
        installed_stack()


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_config_scopes_resolve_to_installed_distributions(scope):
    # mmengine.hub.get_config runs `python -m pip install <distribution>` for a scope whose
    # distribution it does not find: on the OneDL stack that was upstream mmsegmentation.
    assert is_installed(MODULE2PACKAGE[scope])


def test_mmseg_base_config_inherits(tmp_path):
    config = tmp_path / 'config.py'
    config.write_text("_base_ = ['mmseg::_base_/models/upernet_r50.py']\n")
    assert Config.fromfile(str(config)).model.type == 'EncoderDecoder'


class CountingIterator:
    def __init__(self):
        self.loaded = 0
        self.sampler_skipped = 0

    def __next__(self):
        self.loaded += 1
        return self.loaded

    def skip_iter(self, num_iters):  # onedl-mmengine: advance the sampler, load nothing
        self.sampler_skipped += num_iters


@pytest.mark.parametrize('num_workers, loaded', [(2, 3), (0, 0)])
def test_resume_replays_skipped_batches_with_workers(num_workers, loaded):
    iterator = CountingIterator()
    loop = SimpleNamespace(dataloader=SimpleNamespace(num_workers=num_workers),
                           dataloader_iterator=iterator)
    replay_skipped_batches(loop)
    loop.dataloader_iterator.skip_iter(3)
    assert iterator.loaded == loaded
    assert iterator.sampler_skipped == 3 - loaded


def test_replay_leaves_loops_without_skip_iter_alone():
    loop = SimpleNamespace(dataloader=SimpleNamespace(num_workers=2),
                           dataloader_iterator=iter([1, 2]))
    replay_skipped_batches(loop)
    assert not hasattr(loop.dataloader_iterator, 'skip_iter')
