"""UperNet-ConvNeXt to and from Hugging Face transformers, checked against transformers' own
``UperNetForSemanticSegmentation`` on perturbed weights (BatchNorm statistics, layer scale and GRN
off their init): ours -> folder -> ``from_pretrained`` and ``save_pretrained`` -> checkpoint ->
our model as ``tools/test.py`` loads it give the same logits, and ``tools/test.py`` evaluates an
imported checkpoint. Small models (a custom V1, V2-atto) with a 16-channel head keep it fast."""
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from torch import nn

import convnext_dense  # noqa: F401  (registers the backbone, safe checkpoint loading)
from convnext_dense.checkpoint import load_model_checkpoint
from convnext_dense.datasets import SEG_CLASSES, make_toy_data
from convnext_dense.deployment.hf_upernet import (
    export_hf,
    hf_to_upernet_state_dict,
    import_hf,
    upernet_to_hf_state_dict,
)
from convnext_dense.engine import build_model
from convnext_dense.fileio.torch_load import read_checkpoint
from tests.helpers import ROOT, perturb_, run_tool_in_process
from tests.numerics import assert_close_to_reference, reduction_depth

transformers = pytest.importorskip('transformers')
safetensors_torch = pytest.importorskip('safetensors.torch')  # installed with transformers

TOY = ROOT / 'configs/upernet/convnext_atto_toy.py'
CLASSES = SEG_CLASSES  # the toy config's
HEAD_CHANNELS, AUX_CHANNELS = 16, 8
# V1: a custom size with layer scale, and an auxiliary head with 2 convs + concat_input (its
# conv_cat); V2: atto with GRN and the toy config's 1-conv auxiliary head.
MODELS = {
    'v1': dict(backbone="arch=dict(depths=[1, 1, 2, 1], dims=[16, 32, 48, 64]), version='v1', "
                        'layer_scale_init_value=1.0',
               dims=[16, 32, 48, 64], aux_convs=2, aux_concat=True),
    'v2': dict(backbone="arch='atto'", dims=[40, 80, 160, 320], aux_convs=1, aux_concat=False),
}
IMAGE_HW = (96, 128)  # not square: a swapped H and W would show


def write_config(path, version: str, decode_head: str = '', auxiliary_head: str = '',
                 backbone: str = '', extra: str = '') -> str:
    """A config file inheriting the toy UperNet config, with the small model of ``version``."""
    spec = MODELS[version]
    dims = spec['dims']
    path.write_text(
        f'_base_ = [{str(TOY)!r}]\n'
        f"model = dict(\n"
        f"    backbone=dict(_delete_=True, type='ConvNeXt', {spec['backbone']}, init_cfg=None"
        f"{backbone}),\n"
        f'    decode_head=dict(in_channels={dims}, channels={HEAD_CHANNELS}{decode_head}),\n'
        f'    auxiliary_head=dict(in_channels={dims[2]}, channels={AUX_CHANNELS}, '
        f"num_convs={spec['aux_convs']}, concat_input={spec['aux_concat']}{auxiliary_head}))\n"
        f'{extra}')
    return str(path)


def randomize_batch_norm_(model: nn.Module, seed: int) -> nn.Module:
    """Running statistics off their init (0 and 1), which would hide a misplaced tensor."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            shape = module.running_mean.shape
            module.running_mean.copy_(0.1 * torch.randn(shape, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
            module.num_batches_tracked.fill_(seed + 1)
    return model


def logits_depth(model: nn.Module) -> int:
    """Reduction depth of the logits: backbone and decode head (GRN over the stride-4 map),
    plus the pyramid pooling's average over the whole stride-32 map."""
    positions = IMAGE_HW[0] * IMAGE_HW[1]
    return reduction_depth(model.backbone, model.decode_head, grn_positions=positions // 16) + \
        positions // 32**2


def our_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmseg's whole-image inference: ``encode_decode`` resizes to the input size."""
    with torch.no_grad():
        return model.encode_decode(x, [dict(img_shape=tuple(x.shape[2:]))])


def hf_outputs(hf_model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' logits and its auxiliary head's output (before resizing)."""
    with torch.no_grad():
        logits = hf_model(pixel_values=x).logits
        features = hf_model.backbone(x).feature_maps
        return logits, hf_model.auxiliary_head(features)


def assert_same_model(ours: nn.Module, hf_model, seed: int) -> None:
    x = torch.randn(1, 3, *IMAGE_HW, generator=torch.Generator().manual_seed(seed))
    logits, aux = hf_outputs(hf_model, x)
    assert logits.std() > 0.1  # the comparison is not of near-constant maps
    assert_close_to_reference(our_logits(ours, x), logits, logits_depth(ours), name='logits')
    with torch.no_grad():
        our_aux = ours.auxiliary_head(ours.extract_feat(x))
    depth = reduction_depth(ours.backbone, ours.auxiliary_head,
                            grn_positions=IMAGE_HW[0] * IMAGE_HW[1] // 16)
    assert_close_to_reference(our_aux, aux, depth, name='auxiliary head')


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_export_loads_in_transformers_with_the_same_logits(tmp_path, version):
    config = write_config(tmp_path / 'upernet.py', version)
    model = randomize_batch_norm_(perturb_(build_model(Config.fromfile(config)).eval(), seed=1), 1)
    checkpoint = tmp_path / 'model.pth'
    # class names other than the config's, one per predicted class
    checkpoint_classes = tuple(f'class{i}' for i in range(len(CLASSES)))
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': checkpoint_classes}}}, checkpoint)

    summary = export_hf(config, str(checkpoint), str(tmp_path / 'hf'))
    hf_model = transformers.UperNetForSemanticSegmentation.from_pretrained(tmp_path / 'hf')
    hf_model.eval()
    assert_same_model(model, hf_model, seed=2)

    expected_type = {'v1': transformers.ConvNextConfig, 'v2': transformers.ConvNextV2Config}
    backbone_config = hf_model.config.backbone_config
    assert type(backbone_config) is expected_type[version]
    assert summary['backbone'] == backbone_config.model_type
    assert backbone_config.depths == model.backbone.depths
    assert backbone_config.drop_path_rate == 0.0  # the toy config trains with 0.1
    # the checkpoint's class names, not the config's
    assert hf_model.config.id2label == dict(enumerate(checkpoint_classes))
    assert hf_model.config.hidden_size == HEAD_CHANNELS
    assert hf_model.config.auxiliary_loss_weight == 0.4

    # The image processor normalises an RGB image as our data preprocessor does the BGR one
    # mmseg loads: rescale, mean/255, std/255, subtract and divide, one rounding each.
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path / 'hf')
    rgb = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    pixels = torch.from_numpy(processor(images=rgb, return_tensors='np')['pixel_values'])
    bgr = torch.from_numpy(rgb[..., ::-1].copy()).permute(2, 0, 1)
    ours = model.data_preprocessor(dict(inputs=[bgr]), training=False)['inputs']
    assert_close_to_reference(ours, pixels, depth=5, name='pixel values')


def hf_model_for(version: str, seed: int, use_auxiliary_head: bool = True):
    """transformers' UperNet of the same shape as ``write_config(version)``'s, built from its
    own config classes, on perturbed weights."""
    spec = MODELS[version]
    stages = ['stage1', 'stage2', 'stage3', 'stage4']
    depths = [1, 1, 2, 1] if version == 'v1' else [2, 2, 6, 2]
    if version == 'v1':
        backbone = transformers.ConvNextConfig(depths=depths, hidden_sizes=spec['dims'],
                                               layer_scale_init_value=1.0, out_features=stages)
    else:
        backbone = transformers.ConvNextV2Config(depths=depths, hidden_sizes=spec['dims'],
                                                 out_features=stages)
    config = transformers.UperNetConfig(
        backbone_config=backbone, hidden_size=HEAD_CHANNELS, use_auxiliary_head=use_auxiliary_head,
        auxiliary_in_channels=spec['dims'][2], auxiliary_channels=AUX_CHANNELS,
        auxiliary_num_convs=spec['aux_convs'], auxiliary_concat_input=spec['aux_concat'],
        id2label=dict(enumerate(CLASSES)), label2id={c: i for i, c in enumerate(CLASSES)})
    torch.manual_seed(seed)
    return randomize_batch_norm_(perturb_(
        transformers.UperNetForSemanticSegmentation(config), seed=seed), seed)


@pytest.mark.parametrize('version,save,weights', [
    ('v1', dict(safe_serialization=False), 'pytorch_model.bin'),
    ('v2', dict(max_shard_size='300KB'), 'model.safetensors.index.json'),  # sharded
])
def test_import_gives_our_model_the_same_logits(tmp_path, version, save, weights):
    hf_model = hf_model_for(version, seed=3)
    hf_model.save_pretrained(tmp_path / 'hf', **save)
    assert (tmp_path / 'hf' / weights).is_file()
    config = write_config(tmp_path / 'upernet.py', version)
    checkpoint = tmp_path / 'imported.pth'
    import_hf(str(tmp_path / 'hf'), str(checkpoint), config=config)

    model = build_model(Config.fromfile(config)).eval()
    load_model_checkpoint(model, str(checkpoint))  # what tools/test.py's LoadCheckpointHook runs
    assert_same_model(model, hf_model, seed=4)
    meta = read_checkpoint(str(checkpoint))['meta']
    assert meta['dataset_meta']['classes'] == CLASSES


def test_state_dict_renaming_round_trips_exactly():
    hf_state = hf_model_for('v2', seed=5).state_dict()
    back = upernet_to_hf_state_dict(hf_to_upernet_state_dict(hf_state))
    assert set(back) == set(hf_state)
    assert all(torch.equal(back[k], v) for k, v in hf_state.items())


def test_tools_import_then_test_evaluate(tmp_path, monkeypatch):
    """import_hf.py then tools/test.py (a subprocess, as a user runs it) on toy images."""
    make_toy_data(str(tmp_path / 'data'), num_train=1, num_val=2, size=64)
    hf_model_for('v2', seed=6).save_pretrained(tmp_path / 'hf')
    config = write_config(tmp_path / 'upernet.py', 'v2')
    monkeypatch.chdir(tmp_path)
    run_tool_in_process('tools/deployment/import_hf.py', 'hf', 'imported.pth', '--config',
                        config, monkeypatch=monkeypatch)
    result = subprocess.run([sys.executable, str(ROOT / 'tools/test.py'), config, 'imported.pth',
                             '--work-dir', 'work'], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert 'every tensor of the model loaded' in log
    assert re.search(r'mIoU: \d+\.\d+', log), log[-2000:]


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize('edit,match', [
    (dict(extra="model['backbone'] = dict(type='ResNetV1c', depth=18)\n"),
     r"model\.backbone\.type='ResNetV1c'"),
    (dict(decode_head=", type='PSPHead'"), r"model\.decode_head\.type='PSPHead'"),
    (dict(decode_head=', align_corners=True'), r'decode_head\.align_corners=True'),
    (dict(auxiliary_head=', in_index=1'), r'auxiliary_head\.in_index=1'),
    (dict(backbone=", norm_cfg=dict(type='LN2d', eps=1e-5)"), r'backbone\.norm_cfg eps=1e-05'),
    (dict(backbone=', out_indices=(1, 2, 3)'), r'backbone\.out_indices=\(1, 2, 3\)'),
])
def test_export_names_what_transformers_cannot_compute(tmp_path, edit, match):
    config = write_config(tmp_path / 'upernet.py', 'v2', **edit)
    checkpoint = tmp_path / 'model.pth'
    torch.save({'state_dict': {}}, checkpoint)
    with pytest.raises(ValueError, match=match) as error:
        export_hf(config, str(checkpoint), str(tmp_path / 'hf'))
    assert config in str(error.value)
    assert not (tmp_path / 'hf').exists()


def test_export_tool_exits_with_the_message(tmp_path, monkeypatch):
    config = write_config(tmp_path / 'upernet.py', 'v2', decode_head=', align_corners=True')
    checkpoint = tmp_path / 'model.pth'
    with pytest.raises(SystemExit, match=r"^error: checkpoint file '.*model\.pth' does not"):
        run_tool_in_process('tools/deployment/export_hf.py', config, checkpoint, tmp_path / 'hf',
                            monkeypatch=monkeypatch)
    torch.save({'state_dict': {}}, checkpoint)
    with pytest.raises(SystemExit, match=r'^error: .*upernet\.py: model\.decode_head\.align_'):
        run_tool_in_process('tools/deployment/export_hf.py', config, checkpoint, tmp_path / 'hf',
                            monkeypatch=monkeypatch)


def test_export_names_a_checkpoint_without_state_dict_or_classes(tmp_path):
    config = write_config(tmp_path / 'upernet.py', 'v2')
    checkpoint = tmp_path / 'meta_only.pth'
    torch.save({'meta': {'epoch': 1}}, checkpoint)
    with pytest.raises(ValueError, match=r"meta_only\.pth' has no state_dict.*\['meta'\]"):
        export_hf(config, str(checkpoint), str(tmp_path / 'hf'))

    state = build_model(Config.fromfile(config)).eval().state_dict()
    torch.save({'state_dict': state, 'meta': {'dataset_meta': {'classes': ('a', 'b')}}},
               checkpoint)
    with pytest.raises(ValueError, match=r'meta\.dataset_meta\.classes has 2 classes but the '
                                         rf'model predicts {len(CLASSES)}'):
        export_hf(config, str(checkpoint), str(tmp_path / 'hf'))
    torch.save({'state_dict': {k: v for k, v in state.items() if 'conv_seg' not in k}},
               checkpoint)
    with pytest.raises(ValueError, match=r"meta_only\.pth' lacks 4 .*conv_seg"):
        export_hf(config, str(checkpoint), str(tmp_path / 'hf'))
    assert not (tmp_path / 'hf').exists()


def test_import_names_the_file_and_key(tmp_path):
    folder = tmp_path / 'hf'
    with pytest.raises(FileNotFoundError, match=r'hf/config\.json does not exist'):
        import_hf(str(folder), str(tmp_path / 'out.pth'))
    transformers.ConvNextConfig().save_pretrained(folder)
    with pytest.raises(ValueError, match=r"config\.json: model_type='convnext'; expected "
                                         r"'upernet'"):
        import_hf(str(folder), str(tmp_path / 'out.pth'))
    transformers.UperNetConfig().save_pretrained(folder)  # a ResNet backbone by default
    with pytest.raises(ValueError, match=r"backbone_config\.model_type='resnet'"):
        import_hf(str(folder), str(tmp_path / 'out.pth'))

    hf_model = hf_model_for('v2', seed=7, use_auxiliary_head=False)
    hf_model.config.save_pretrained(folder)
    with pytest.raises(FileNotFoundError, match=r'hf has no weights.*model\.safetensors'):
        import_hf(str(folder), str(tmp_path / 'out.pth'))
    hf_model.save_pretrained(folder)
    config = write_config(tmp_path / 'upernet.py', 'v2', decode_head=', pool_scales=(1, 2)')
    with pytest.raises(ValueError, match=r'config\.json describes another model than .*'
                                         r'pool_scales=\[1, 2, 3, 6\] there, \[1, 2\] in .*'
                                         r'use_auxiliary_head=False there, True in .*'
                                         r'model\.auxiliary_head=None'):
        import_hf(str(folder), str(tmp_path / 'out.pth'), config=config)
    assert not (tmp_path / 'out.pth').exists()

    # without an auxiliary head, the config's model.auxiliary_head=None evaluates it
    config = write_config(tmp_path / 'upernet.py', 'v2',
                          extra="model['auxiliary_head'] = None\n")
    import_hf(str(folder), str(tmp_path / 'out.pth'), config=config)
    model = build_model(Config.fromfile(config)).eval()
    load_model_checkpoint(model, str(tmp_path / 'out.pth'))

    weights = safetensors_torch.load_file(folder / 'model.safetensors')
    del weights['decode_head.classifier.bias']
    safetensors_torch.save_file(weights, folder / 'model.safetensors', metadata={'format': 'pt'})
    with pytest.raises(ValueError, match=r"weights in .*hf do not fit .*missing "
                                         r"\['decode_head\.classifier\.bias'\]"):
        import_hf(str(folder), str(tmp_path / 'other.pth'))
