"""The tools' config handling: checked --cfg-options, CPU adaptation, resume/TTA/out options, and
atomic checkpoint writes."""
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import get_file_backend

import convnext_dense  # noqa: F401  (registers the atomic backend)
from convnext_dense.config import check_cfg_options
from convnext_dense.engine.run_config import adapt_to_cpu, prepare_test_cfg, prepare_train_cfg
from convnext_dense.fileio import AtomicLocalBackend

CONFIG = """
_base_ = ['mmseg::_base_/models/upernet_r50.py', 'mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)
model = dict(pretrained=None, backbone=dict(_delete_=True, type='ConvNeXt', arch='atto'))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=10, val_interval=5)
optim_wrapper = dict(type='AmpOptimWrapper', optimizer=dict(type='AdamW', lr=1e-4),
                     loss_scale='dynamic')
"""


@pytest.fixture()
def config_file(tmp_path):
    path = tmp_path / 'upernet_atto.py'
    path.write_text(CONFIG)
    return str(path)


@pytest.fixture()
def cfg(config_file):
    return Config.fromfile(config_file)


def test_cfg_option_typo_in_leaf(cfg):
    with pytest.raises(KeyError, match=r"train_cfg\.max_iter.*did you mean 'max_iters'"):
        check_cfg_options(cfg, {'train_cfg.max_iter': 5})


def test_cfg_option_missing_parent(cfg):
    with pytest.raises(KeyError, match=r"no 'optim_wraper'.*did you mean 'optim_wrapper'"):
        check_cfg_options(cfg, {'optim_wraper.optimizer.lr': 1e-3})


def test_cfg_option_list_index(cfg):
    check_cfg_options(cfg, {'model.decode_head.in_channels.0': 40})
    with pytest.raises(KeyError, match='indexes a list of 4 items'):
        check_cfg_options(cfg, {'model.decode_head.in_channels.7': 40})


def test_cfg_option_new_keys_allowed(cfg):
    check_cfg_options(cfg, {'randomness.seed': 0, 'model.backbone.drop_path_rate': 0.1,
                            'train_cfg.max_iters': 3})


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU adaptation only without CUDA')
def test_cpu_adaptation(cfg, capsys):
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    adapt_to_cpu(cfg)
    assert cfg.model.decode_head.norm_cfg.type == 'BN'
    assert cfg.model.auxiliary_head.norm_cfg.type == 'BN'
    assert cfg.optim_wrapper.type == 'OptimWrapper' and 'loss_scale' not in cfg.optim_wrapper


def test_prepare_train_cfg(config_file, tmp_path):
    cfg = prepare_train_cfg(config_file, resume='auto', tensorboard=True,
                            cfg_options={'train_cfg.max_iters': 3})
    assert cfg.work_dir.endswith('upernet_atto') and cfg.resume and cfg.load_from is None
    assert cfg.train_cfg.max_iters == 3
    assert {'RNGStateHook', 'EvalProgressBarHook'} <= {h['type'] for h in cfg.custom_hooks}
    assert cfg.visualizer.vis_backends[-1]['type'] == 'TensorboardVisBackend'
    with pytest.raises(FileNotFoundError, match='--resume missing.pth'):
        prepare_train_cfg(config_file, resume='missing.pth')


def test_prepare_test_cfg_loads_through_the_checking_hook(config_file, tmp_path):
    checkpoint = tmp_path / 'x.pth'
    checkpoint.write_bytes(b'')
    cfg = prepare_test_cfg(config_file, str(checkpoint))
    # not load_from: mmengine loads that with strict=False and only warns
    assert cfg.load_from is None
    assert dict(type='LoadCheckpointHook', checkpoint=str(checkpoint)) in cfg.custom_hooks


def test_prepare_test_cfg_errors(config_file, tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        prepare_test_cfg(config_file, str(tmp_path / 'nope.pth'))
    checkpoint = tmp_path / 'x.pth'
    checkpoint.write_bytes(b'')
    with pytest.raises(ValueError, match='--tta: .* defines no tta_model'):
        prepare_test_cfg(config_file, str(checkpoint), tta=True,
                         cfg_options={'tta_model': None})
    with pytest.raises(FileNotFoundError, match="config file 'missing.py'"):
        prepare_test_cfg('missing.py', str(checkpoint))


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    backend = get_file_backend(str(tmp_path / 'last_checkpoint'))
    assert isinstance(backend, AtomicLocalBackend)
    target = tmp_path / 'epoch_1.pth'
    backend.put(b'complete old checkpoint', str(target))

    def crash(*args):
        raise KeyboardInterrupt('killed while writing')

    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(KeyboardInterrupt):
        backend.put(b'new checkpoint that never finished', str(target))
    monkeypatch.undo()
    assert target.read_bytes() == b'complete old checkpoint'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['epoch_1.pth']


def test_atomic_writes_have_the_permissions_of_open(tmp_path):
    """A checkpoint is as readable as mmengine's plain open() would make it (the umask applied
    to 0o666), not owner-only as the temporary file it was written to."""
    backend = get_file_backend(str(tmp_path / 'x'))
    previous = os.umask(0o027)
    try:
        backend.put(b'checkpoint', str(tmp_path / 'epoch_1.pth'))
        with open(tmp_path / 'plain.pth', 'wb') as f:
            f.write(b'checkpoint')
    finally:
        os.umask(previous)
    mode = (tmp_path / 'epoch_1.pth').stat().st_mode & 0o777
    assert mode == (tmp_path / 'plain.pth').stat().st_mode & 0o777 == 0o640


def test_amp_flag_on_an_amp_config_is_warned(config_file, monkeypatch):
    from convnext_dense.engine import run_config
    messages = []
    monkeypatch.setattr(run_config, 'print_log', lambda msg, **kwargs: messages.append(msg))
    cfg = prepare_train_cfg(config_file, amp=True)
    assert cfg.optim_wrapper.type in ('AmpOptimWrapper', 'OptimWrapper')  # OptimWrapper on CPU
    assert any(m == f'--amp: {config_file} already trains with AMP (AmpOptimWrapper)'
               for m in messages), messages


def test_auto_scale_lr(config_file, tmp_path):
    with pytest.raises(ValueError, match=r'--auto-scale-lr: .*upernet_atto\.py has no '
                       r'auto_scale_lr'):
        prepare_train_cfg(config_file, auto_scale_lr=True)
    scaled = tmp_path / 'scaled.py'
    scaled.write_text(f"_base_ = [{config_file!r}]\n"
                      "auto_scale_lr = dict(enable=False, base_batch_size=16)\n")
    assert not prepare_train_cfg(str(scaled)).auto_scale_lr.enable
    assert prepare_train_cfg(str(scaled), auto_scale_lr=True).auto_scale_lr == dict(
        enable=True, base_batch_size=16)


def test_test_outputs_of_a_segmentation_config(config_file, tmp_path):
    checkpoint = tmp_path / 'x.pth'
    checkpoint.write_bytes(b'')
    with_hooks = tmp_path / 'with_hooks.py'
    with_hooks.write_text(f"_base_ = [{config_file!r}]\n"
                          "default_hooks = dict(visualization=dict(type='SegVisualizationHook'))"
                          "\ntest_evaluator = dict(type='IoUMetric')\n")
    cfg = prepare_test_cfg(str(with_hooks), str(checkpoint), out=str(tmp_path / 'maps'),
                           show_dir=str(tmp_path / 'pics'))
    assert cfg.test_evaluator == [dict(type='IoUMetric', output_dir=str(tmp_path / 'maps'))]
    assert cfg.default_hooks.visualization.draw
    assert cfg.visualizer.save_dir == str(tmp_path / 'pics')
    assert cfg.visualizer.vis_backends == [dict(type='LocalVisBackend')]


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU adaptation only without CUDA')
def test_cpu_keeps_bf16_amp(cfg):
    """fp16 AMP needs a GPU and becomes fp32 on the CPU; bf16 autocast runs on the CPU, but
    mmengine's AmpOptimWrapper refuses to be built there, so it becomes BF16OptimWrapper."""
    cfg.optim_wrapper.dtype = 'bfloat16'
    adapt_to_cpu(cfg)
    assert cfg.optim_wrapper.type == 'BF16OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper and 'dtype' not in cfg.optim_wrapper


def test_fast_path_flags(config_file, tmp_path):
    cfg = prepare_train_cfg(config_file, amp=True, bf16=True, channels_last=True)
    # --bf16 over --amp: bf16 autocast without a loss scaler, on any device
    assert cfg.optim_wrapper.type == 'BF16OptimWrapper' and 'loss_scale' not in cfg.optim_wrapper
    assert cfg.fast_path == dict(bf16=True, channels_last=True, compile=False)
    assert 'FastPathHook' in [h['type'] for h in cfg.custom_hooks]
    plain = prepare_train_cfg(config_file)
    assert plain.fast_path == dict(bf16=False, channels_last=False, compile=False)
    assert 'FastPathHook' not in [h['type'] for h in plain.custom_hooks]
    checkpoint = tmp_path / 'x.pth'
    checkpoint.write_bytes(b'')
    cfg = prepare_test_cfg(config_file, str(checkpoint), compile=True,
                           cfg_options={'fast_path.compile.backend': 'aot_eager'})
    assert cfg.fast_path.compile.backend == 'aot_eager' and not cfg.fast_path.bf16
    assert 'FastPathHook' in [h['type'] for h in cfg.custom_hooks]
