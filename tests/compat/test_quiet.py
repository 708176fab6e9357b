"""convnext_dense.compat.quiet: the upstream warnings a user cannot act on are gone, raised by the
upstream code itself, in this process and in a real tools/train.py run (with its dataloader
workers); every other warning, upstream's or ours, still shows."""
import logging
import warnings

import pytest
from mmengine.logging import MMLogger, print_log

import convnext_dense  # noqa: F401  (installs the filters)
from convnext_dense.compat.quiet import LOG_WARNINGS, WARNINGS, silence_upstream_noise
from tests.helpers import ROOT, make_toy_data_in, run_tool

PKG_RESOURCES = 'pkg_resources is deprecated as an API'
BUILD_LOSS = '``build_loss`` would be deprecated soon'
FILE_CLIENT = '"FileClient" will be deprecated in future'
HARD_DISK = '"HardDiskBackend" is the alias of "LocalBackend"'
IOU_PREFIX = 'The prefix is not set in metric class IoUMetric.'
SILENCED = (PKG_RESOURCES, BUILD_LOSS, FILE_CLIENT, HARD_DISK, IOU_PREFIX)


@pytest.fixture(autouse=True)
def installed():
    """pytest restores the warning filters after collecting a module, dropping those that
    ``import convnext_dense`` installed: install them again, as the import does in a run."""
    silence_upstream_noise()


def recorded(action) -> list[str]:
    """The messages of the warnings ``action()`` raises that the filters let through."""
    with warnings.catch_warnings(record=True) as caught:
        action()
    return [str(w.message) for w in caught]


def test_upstream_warnings_raised_by_upstream_code_are_silenced():
    from mmengine.utils import is_installed
    from mmseg.models.builder import build_loss

    # mmengine imports and reloads pkg_resources; mmseg's heads build losses this way
    assert not any(PKG_RESOURCES in m for m in recorded(lambda: is_installed('mmseg')))
    assert not any(BUILD_LOSS in m for m in recorded(
        lambda: build_loss(dict(type='CrossEntropyLoss'))))


@pytest.mark.parametrize('message, module, shown', [
    (PKG_RESOURCES + '. See https://setuptools.pypa.io', 'mmengine.utils.package_utils', False),
    (PKG_RESOURCES + '. See https://setuptools.pypa.io', 'importlib', False),
    # the same message from anywhere else (a user's own import of pkg_resources) still shows
    (PKG_RESOURCES + '. See https://setuptools.pypa.io', 'my_project.plugins', True),
    (BUILD_LOSS + ', please use ``mmseg.registry.MODELS.build()``', 'mmseg.models.builder',
     False),
    (BUILD_LOSS, 'mmseg.models.losses', True),
    ('another warning', 'mmseg.models.builder', True),
])
def test_filters_match_the_message_and_where_it_is_raised(message, module, shown):
    def warn():
        warnings.warn_explicit(message, UserWarning, f'{module.replace(".", "/")}.py', 17,
                               module=module)
    assert recorded(warn) == ([message] if shown else [])


def test_log_warnings_of_mmengine_are_dropped_and_others_kept(capsys):
    from mmengine.evaluator import BaseMetric
    from mmengine.fileio import FileClient
    from mmseg.evaluation import IoUMetric

    class ToyMetric(BaseMetric):
        def process(self, data_batch, data_samples):
            pass

        def compute_metrics(self, results):
            return {}

    logger = MMLogger.get_instance('test_quiet', logger_name='mmengine')  # as a runner makes it
    FileClient(backend='disk')  # prints both of its deprecation notices through the logger
    IoUMetric()
    ToyMetric()
    print_log('a warning of our own', logger='current', level=logging.WARNING)
    print_log('"FileClient" will be deprecated in future: an info line', logger='current')
    output = capsys.readouterr().out
    for message in (HARD_DISK, IOU_PREFIX):
        assert message not in output
    # only the INFO line that starts like the notice: FileClient's own WARNING is gone
    assert output.count(FILE_CLIENT) == 1
    assert '"FileClient" will be deprecated in future: an info line' in output
    assert 'a warning of our own' in output
    assert 'The prefix is not set in metric class ToyMetric.' in output  # not mmseg's metric
    assert sum(1 for f in logger.filters if type(f).__name__ == 'UpstreamLogFilter') == 1


def test_silencing_again_adds_nothing():
    filters = list(warnings.filters)
    init = MMLogger.__init__
    silence_upstream_noise()
    assert warnings.filters == filters and MMLogger.__init__ is init
    # one entry per message, each with its reason
    assert len(WARNINGS) + len(LOG_WARNINGS) == len(SILENCED)
    assert all(entry.why for entry in (*WARNINGS, *LOG_WARNINGS))


def test_a_training_run_is_quiet_and_keeps_our_lines(tmp_path):
    workspace = make_toy_data_in(tmp_path, num_train=4, num_val=2)
    result = run_tool([ROOT / 'tools/train.py', ROOT / 'configs/upernet/convnext_atto_toy.py',
                       '--work-dir', 'work', '--cfg-options', 'train_cfg.max_iters=2',
                       'train_cfg.val_interval=2', 'default_hooks.logger.interval=1',
                       'train_dataloader.batch_size=2',
                       # an mmpretrain-style call freezing the stem: a warning of ours
                       'model.backbone.linear_pw_conv=True', 'model.backbone.frozen_stages=0'],
                      cwd=workspace)
    output = result.stdout + result.stderr
    for message in SILENCED:
        assert message not in output, message
    # our own lines: the optimizer constructor's table, a warning of the backbone, progress
    assert 'layer-wise lr decay: stage_wise' in output
    assert 'ConvNeXt(frozen_stages=0) freezes the stem' in output
    assert 'Iter(train) [2/2]' in output and 'Iter(val) [2/2]' in output
    # and an upstream warning about a setting the user can change stays
    assert 'The draw is False' in output
