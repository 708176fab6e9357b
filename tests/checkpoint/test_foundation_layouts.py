"""DINOv3, EUPE and CLIP ConvNeXt checkpoints in every layout they ship in, each against the
library that defines the layout: timm's ``convnext_small.dinov3_lvd1689m`` and
``convnext_tiny.eupe_lvd1689m`` models, transformers' ``DINOv3ConvNextModel`` (state dict and
``save_pretrained`` folder), a DINOv3 / EUPE official file with the key names of
facebookresearch/dinov3's ``models/convnext.py`` (checked against transformers' model through the
renaming of its converter), and an open_clip CLIP model file (a timm trunk under
``visual.trunk.`` beside the projection and text tower).

For each: our stage outputs equal the reference's per-stage features, the final norm lands as
the stage-4 output norm where it normalises patch tokens (equal to the reference's normalised
patch tokens) and is dropped where it is a classifier's, every key of the file is accounted
for in the report, and the licence line is logged. No downloads: the references are built from
their configs with perturbed weights.
"""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from convnext_dense.checkpoint import (
    convert_state_dict,
    detect_layout,
    export_state_dict,
    licence_notice,
    load_state_dict_into,
    weight_families,
)
from convnext_dense.models import ConvNeXt
from tests.helpers import LogRecords, perturb_, run_tool_in_process, stage_outputs
from tests.numerics import (
    assert_backbone_outputs_close,
    assert_close_to_reference,
    reduction_depth,
)

SMALL = dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32])
DINOV3_LICENCE = 'https://github.com/facebookresearch/dinov3/blob/main/LICENSE.md'
EUPE_LICENCE = 'https://github.com/facebookresearch/EUPE/blob/main/LICENSE.md'


def image(size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def assert_every_key_accounted(state: dict, report, loaded: set[str]) -> None:
    """Each key of the file was loaded (``loaded``: its keys that went into the model) or is in
    exactly one of the report's lists."""
    listed = [*report.dropped_classifier, *report.ignored,
              *(k for keys in report.dropped.values() for k in keys)]
    assert len(listed) == len(set(listed)), 'a key is listed twice'
    assert not set(listed) & loaded
    assert set(listed) | loaded == set(state), set(state) - set(listed) - loaded


def licence_lines(messages: list[str]) -> list[str]:
    return [m for m in messages if 'License' in m]


def assert_final_norm_is_patch_norm(ours: ConvNeXt, x: torch.Tensor,
                                    normalised_patches: torch.Tensor) -> None:
    """Our stage-4 output equals the reference's final norm applied to its patch tokens."""
    with torch.no_grad():
        out = ours(x)[-1]
    assert_close_to_reference(out, normalised_patches, reduction_depth(ours),
                              name='stage-4 output (final norm)')


# -- timm -----------------------------------------------------------------------------------
def timm_reference(name: str) -> nn.Module:
    timm = pytest.importorskip('timm')
    if name not in timm.list_pretrained(name.split('.')[0] + '.*'):
        pytest.skip(f'timm {timm.__version__} has no {name} (timm >= 1.0.20)')
    return perturb_(timm.create_model(name, pretrained=False))


@pytest.mark.parametrize('name, arch, family', [
    ('convnext_small.dinov3_lvd1689m', 'small', 'dinov3'),
    ('convnext_tiny.eupe_lvd1689m', 'tiny', 'eupe'),
])
def test_timm_dinov3_and_eupe(name, arch, family):
    reference = timm_reference(name)
    state = dict(reference.state_dict())
    # the DINOv3 / EUPE tags are feature encoders: timm builds them with num_classes=0
    assert 'head.norm.weight' in state and not any(k.startswith('head.fc') for k in state)
    if family == 'eupe':
        # what EUPE's own files add (timm's checkpoint_filter_fn drops them): distillation
        # projectors, and DINOv3's norms list, whose norms.3 is the final norm again
        generator = torch.Generator().manual_seed(1)
        state['projectors.0.weight'] = torch.randn(16, 768, generator=generator)
        state['projectors.0.bias'] = torch.randn(16, generator=generator)
        state['norms.3.weight'] = state['head.norm.weight'].clone()
        state['norms.3.bias'] = state['head.norm.bias'].clone()
    ours = ConvNeXt(arch=arch).eval()
    with LogRecords() as messages:
        report = load_state_dict_into(ours, state, source=f'timm {name}')
    assert report.layout == 'timm' and report.final_norm == 'stage4'
    assert report.final_norm_keys == ['head.norm.weight', 'head.norm.bias']
    assert torch.equal(ours.norm3.weight, state['head.norm.weight'])
    assert torch.equal(ours.norm3.bias, state['head.norm.bias'])
    loaded = {k for k in state if not k.startswith(('projectors.', 'norms.'))}
    assert_every_key_accounted(state, report, loaded)
    if family == 'eupe':
        assert report.dropped['EUPE distillation projector'] == ['projectors.0.weight',
                                                                 'projectors.0.bias']
        assert sorted(report.dropped['duplicate of the final norm (head.norm.weight)']
                      + report.dropped['duplicate of the final norm (head.norm.bias)']) == [
                          'norms.3.bias', 'norms.3.weight']
    assert len(licence_lines(messages)) == 1
    assert (EUPE_LICENCE if family == 'eupe' else DINOV3_LICENCE) in licence_lines(messages)[0]
    assert any('loaded as the stage-4 output norm norm3' in m for m in messages)

    x = image()
    with torch.no_grad():
        features = reference.forward_intermediates(x, intermediates_only=True)
        assert_backbone_outputs_close(stage_outputs(ours, x), features, ours, x)
        # timm's head.norm is a LayerNorm2d: on the stage-4 map it normalises each patch token
        assert_final_norm_is_patch_norm(ours, x, reference.head.norm(features[-1]))


def test_timm_classifier_final_norm_is_dropped():
    """A timm classification model's head.norm follows the pooling: dropped with head.fc."""
    timm = pytest.importorskip('timm')
    reference = perturb_(timm.models.convnext.ConvNeXt(**SMALL, num_classes=10))
    ours = ConvNeXt(arch=SMALL).eval()
    report = load_state_dict_into(ours, reference.state_dict())
    assert report.final_norm == 'classifier'
    assert sorted(report.dropped_classifier) == ['head.fc.bias', 'head.fc.weight',
                                                 'head.norm.bias', 'head.norm.weight']
    assert torch.equal(ours.norm3.weight, torch.ones(32))  # fresh, as the paper's code


# -- Hugging Face transformers: DINOv3ConvNextModel -------------------------------------------
def hf_dinov3_reference() -> nn.Module:
    transformers = pytest.importorskip('transformers')
    if not hasattr(transformers, 'DINOv3ConvNextModel'):
        pytest.skip(f'transformers {transformers.__version__} has no DINOv3ConvNextModel (>= 4.56)')
    config = transformers.DINOv3ConvNextConfig(depths=SMALL['depths'],
                                               hidden_sizes=SMALL['dims'])
    return perturb_(transformers.DINOv3ConvNextModel(config))


def assert_matches_hf_dinov3(ours: ConvNeXt, reference: nn.Module) -> None:
    """Stage outputs = its hidden states; stage-4 output = its normalised patch tokens (its
    last_hidden_state is [pooled token; patch tokens] after the final layer_norm)."""
    x = image(seed=2)
    with torch.no_grad():
        out = reference(x, output_hidden_states=True)
    assert_backbone_outputs_close(stage_outputs(ours, x), out.hidden_states[1:], ours, x)
    n, c, h, w = out.hidden_states[-1].shape
    patches = out.last_hidden_state[:, 1:].transpose(1, 2).reshape(n, c, h, w)
    assert_final_norm_is_patch_norm(ours, x, patches)


def test_hf_dinov3_state_dict():
    reference = hf_dinov3_reference()
    state = reference.state_dict()
    assert detect_layout(state) == ('hf_dinov3', '')
    ours = ConvNeXt(arch=SMALL).eval()
    with LogRecords() as messages:
        report = load_state_dict_into(ours, state, source='DINOv3ConvNextModel state dict')
    assert report.layout == 'hf_dinov3' and report.final_norm == 'stage4'
    assert report.final_norm_keys == ['layer_norm.weight', 'layer_norm.bias']
    assert torch.equal(ours.norm3.weight, state['layer_norm.weight'])
    assert_every_key_accounted(state, report, set(state))
    assert not report.ignored and not report.dropped and not report.dropped_classifier
    # transformers holds DINOv3's weights only: its licence whatever the file is called
    assert [DINOV3_LICENCE in m for m in licence_lines(messages)] == [True]
    assert_matches_hf_dinov3(ours, reference)


@pytest.mark.parametrize('sharded', [False, True])
def test_hf_dinov3_save_pretrained_folder_through_init_cfg(tmp_path, sharded):
    reference = hf_dinov3_reference()
    folder = tmp_path / 'dinov3-convnext-small-pretrain-lvd1689m'
    reference.save_pretrained(folder, max_shard_size='50KB' if sharded else '5GB')
    assert (folder / 'model.safetensors.index.json').exists() == sharded
    ours = ConvNeXt(arch=SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(folder)))
    ours.init_weights()
    assert_matches_hf_dinov3(ours.eval(), reference)


def test_export_to_hf_dinov3_loads_strictly():
    """Our backbone written as hf_dinov3 is a complete DINOv3ConvNextModel state dict: norm3
    becomes its final layer_norm; norm0..2, which it lacks, keep our names."""
    reference = hf_dinov3_reference()
    ours = perturb_(ConvNeXt(arch=SMALL), seed=3)
    exported = export_state_dict(ours.state_dict(), 'hf_dinov3')
    stage_norms = {f'norm{i}.{p}' for i in range(3) for p in ('weight', 'bias')}
    assert stage_norms <= set(exported)
    reference.load_state_dict({k: v for k, v in exported.items() if k not in stage_norms},
                              strict=True)
    assert_matches_hf_dinov3(ours, reference)


# -- the official DINOv3 / EUPE files ----------------------------------------------------------
class DINOv3ConvNeXtNames(nn.Module):
    """The module tree of facebookresearch/dinov3 ``dinov3/models/convnext.py`` ``ConvNeXt``
    (the same in facebookresearch/EUPE), for its state dict's key names and shapes only: the
    stem and downsampling layers, the blocks (``dwconv``, ``norm``, ``pwconv1``, ``pwconv2``,
    ``gamma``), ``head = Identity``, the final ``norm`` and ``norms``, three Identity modules
    and the final norm again."""

    def __init__(self, depths, dims):
        super().__init__()
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv2d(3, dims[0], kernel_size=4, stride=4), nn.LayerNorm(dims[0]))])
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                nn.LayerNorm(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)))
        self.stages = nn.ModuleList()
        for depth, dim in zip(depths, dims):
            blocks = []
            for _ in range(depth):
                block = nn.Module()
                block.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
                block.norm = nn.LayerNorm(dim)
                block.pwconv1 = nn.Linear(dim, 4 * dim)
                block.pwconv2 = nn.Linear(4 * dim, dim)
                block.gamma = nn.Parameter(torch.full((dim, ), 1e-6))
                blocks.append(block)
            self.stages.append(nn.Sequential(*blocks))
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Identity()
        self.norms = nn.ModuleList([nn.Identity() for _ in range(3)] + [self.norm])


# transformers' convert_dinov3_convnext_to_hf.py renames the official keys with these
# substitutions, in this order, and leaves norms.3 out (it is the final norm again).
HF_CONVERTER_RENAMES = ((r'dwconv', 'depthwise_conv'), (r'pwconv', 'pointwise_conv'),
                        (r'norm', 'layer_norm'),
                        (r'stages\.(\d+)\.(\d+)', r'stages.\1.layers.\2'),
                        (r'downsample_layers\.(\d+)\.(\d+)', r'stages.\1.downsample_layers.\2'))


def official_to_hf(state: dict) -> dict:
    renamed = {}
    for key, value in state.items():
        if key.startswith('norms.'):
            continue
        for pattern, replacement in HF_CONVERTER_RENAMES:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return renamed


@pytest.mark.parametrize('filename, extra, licence', [
    ('dinov3_convnext_tiny_pretrain_lvd1689m-21b726bb.pth', {}, DINOV3_LICENCE),
    ('EUPE-ConvNeXt-T.pt', {'projectors.0.weight': torch.ones(4, 32),
                            'projectors.0.bias': torch.zeros(4)}, EUPE_LICENCE),
    # renamed by its user: one of the two by its keys, both notices
    ('backbone.pth', {}, None),
])
def test_official_file_through_init_cfg(tmp_path, filename, extra, licence):
    official = perturb_(DINOv3ConvNeXtNames(**SMALL), seed=4)
    state = {**official.state_dict(), **extra}
    assert {'norm.weight', 'norms.3.weight'} <= set(state)  # the final norm, saved twice
    torch.save(state, tmp_path / filename)  # dinov3's hub loads a bare state dict
    # the names are dinov3's if transformers' converter renames them into a complete model
    hf_reference = hf_dinov3_reference()
    hf_reference.load_state_dict(
        official_to_hf({k: v for k, v in state.items() if k not in extra}), strict=True)

    ours = ConvNeXt(arch=SMALL, init_cfg=dict(type='Pretrained',
                                              checkpoint=str(tmp_path / filename)))
    with LogRecords() as messages:
        ours.init_weights()
    ours.eval()
    assert torch.equal(ours.norm3.weight, state['norm.weight'])
    report = convert_state_dict(state)[1]
    assert report.layout == 'official' and report.final_norm == 'stage4'
    assert report.dropped['duplicate of the final norm (norm.weight)'] == ['norms.3.weight']
    assert report.dropped['duplicate of the final norm (norm.bias)'] == ['norms.3.bias']
    assert_every_key_accounted(state, report,
                               {k for k in state if not k.startswith(('norms.', 'projectors.'))})
    if extra:
        assert report.dropped['EUPE distillation projector'] == list(extra)
    notices = licence_lines(messages)
    assert len(notices) == 1
    if licence is None:
        assert DINOV3_LICENCE in notices[0] and EUPE_LICENCE in notices[0]
    else:
        assert licence in notices[0] and notices[0].count('https://') == 1
    assert_matches_hf_dinov3(ours, hf_reference)


def test_convert_tool_on_a_save_pretrained_folder(tmp_path, monkeypatch, capsys):
    """tools/convert_checkpoint.py (run in this process) reads a DINOv3ConvNextModel folder and
    writes our layout, the final norm as norm3, and names the licence."""
    reference = hf_dinov3_reference()
    folder = tmp_path / 'dinov3-convnext'
    reference.save_pretrained(folder)
    with LogRecords() as messages:
        run_tool_in_process('tools/convert_checkpoint.py', folder, tmp_path / 'out.pth',
                            monkeypatch=monkeypatch)
    printed = capsys.readouterr().out
    assert 'hf_dinov3 layout' in printed
    assert 'final norm loaded as the stage-4 output norm norm3' in printed
    assert [DINOV3_LICENCE in m for m in licence_lines(messages)] == [True]
    written = torch.load(tmp_path / 'out.pth', weights_only=True)['state_dict']
    assert torch.equal(written['norm3.weight'], reference.layer_norm.weight.detach())
    ours = ConvNeXt(arch=SMALL).eval()
    ours.load_state_dict(written, strict=False)
    assert_matches_hf_dinov3(ours, reference)


def test_official_classifier_release_keeps_its_norm_out():
    """The ImageNet ConvNeXt releases carry head.* beside norm.*: a classifier's final norm,
    dropped (the existing behaviour), and no licence notice."""
    official = DINOv3ConvNeXtNames(**SMALL)
    state = {k: v for k, v in official.state_dict().items() if not k.startswith('norms.')}
    state |= {'head.weight': torch.zeros(10, 32), 'head.bias': torch.zeros(10)}
    converted, report = convert_state_dict(state)
    assert report.final_norm == 'classifier' and 'norm3.weight' not in converted
    assert weight_families('official', state, 'convnext_tiny_1k_224.pth',
                           report.final_norm) == ()


def test_final_norm_choice_overrides_the_layout():
    official = perturb_(DINOv3ConvNeXtNames(**SMALL), seed=5)
    state = {k: v for k, v in official.state_dict().items() if not k.startswith('norms.')}
    dropped, report = convert_state_dict(state, final_norm='drop')
    assert 'norm3.weight' not in dropped and report.final_norm == 'classifier'
    assert report.dropped_classifier == ['norm.weight', 'norm.bias']
    classifier = state | {'head.weight': torch.zeros(10, 32), 'head.bias': torch.zeros(10)}
    kept, report = convert_state_dict(classifier, final_norm='stage4')
    assert torch.equal(kept['norm3.weight'], state['norm.weight'])
    with pytest.raises(ValueError, match="final_norm='last' is not supported; use one of"):
        convert_state_dict(state, final_norm='last')


def test_final_norm_and_stage4_norm_that_differ_are_an_error():
    official = perturb_(DINOv3ConvNeXtNames(**SMALL), seed=6)
    state = dict(official.state_dict())
    state['norms.3.weight'] = state['norms.3.weight'] + 1
    with pytest.raises(ValueError, match=r"the final norm 'norm\.weight' and the stage-4 output "
                       r"norm 'norms\.3\.weight' .* differ; .*final_norm='stage4'"):
        convert_state_dict(state)
    converted, report = convert_state_dict(state, final_norm='stage4')
    assert torch.equal(converted['norm3.weight'], state['norm.weight'])


# -- open_clip ---------------------------------------------------------------------------------
def open_clip_state(trunk: nn.Module, proj: str) -> dict:
    """An open_clip CLIP model's state dict with a timm ConvNeXt image tower (open_clip
    timm_model.py TimmModel: the trunk, its classifier reset to none, then the projection
    ``head.proj`` (linear) or ``head.mlp`` (convnext_large_d), and the text tower."""
    generator = torch.Generator().manual_seed(7)
    state = {f'visual.trunk.{k}': v for k, v in trunk.state_dict().items()}
    width, embed = trunk.num_features, 12
    if proj == 'linear':
        state['visual.head.proj.weight'] = torch.randn(embed, width, generator=generator)
    else:
        state |= {'visual.head.mlp.fc1.weight': torch.randn(2 * embed, width),
                  'visual.head.mlp.fc1.bias': torch.zeros(2 * embed),
                  'visual.head.mlp.fc2.weight': torch.randn(embed, 2 * embed)}
    state |= {'positional_embedding': torch.zeros(77, 16), 'text_projection': torch.zeros(16, 12),
              'logit_scale': torch.tensor(4.6), 'token_embedding.weight': torch.zeros(100, 16),
              'transformer.resblocks.0.attn.in_proj_weight': torch.zeros(48, 16),
              'ln_final.weight': torch.ones(16), 'ln_final.bias': torch.zeros(16)}
    return state


@pytest.mark.parametrize('proj', ['linear', 'mlp'])
def test_open_clip_file(tmp_path, proj):
    timm = pytest.importorskip('timm')
    trunk = timm.models.convnext.ConvNeXt(**SMALL)
    trunk.reset_classifier(0)  # what TimmModel does with timm_pool='' and a projection
    perturb_(trunk)
    state = open_clip_state(trunk, proj)
    path = tmp_path / 'open_clip_pytorch_model.bin'
    torch.save(state, path)
    ours = ConvNeXt(arch=SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with LogRecords() as messages:
        ours.init_weights()
    report = convert_state_dict(state)[1]
    assert report.layout == 'open_clip' and report.prefix == ''
    # its head.norm follows the pooling (the projection reads the pooled vector): dropped
    assert report.final_norm == 'classifier'
    assert report.dropped_classifier == ['visual.trunk.head.norm.weight',
                                         'visual.trunk.head.norm.bias']
    assert report.dropped['CLIP image projection'] == [k for k in state
                                                       if k.startswith('visual.head.')]
    assert sorted(report.dropped['CLIP text tower / logit scale']) == sorted(
        k for k in state if not k.startswith('visual.'))
    assert_every_key_accounted(state, report, {k for k in state if k.startswith('visual.trunk.')
                                               and '.head.' not in k})
    assert torch.equal(ours.norm3.weight, torch.ones(32))  # fresh
    projection = report.dropped['CLIP image projection']
    assert any(f'dropped {len(projection)} tensors: CLIP image projection' in m
               for m in messages)
    assert not licence_lines(messages)
    x = image(seed=8)
    with torch.no_grad():
        features = trunk.forward_intermediates(x, intermediates_only=True)
        assert_backbone_outputs_close(stage_outputs(ours.eval(), x), features, ours, x)


def test_open_clip_xxlarge_is_our_xxlarge():
    """open_clip's convnext_xxlarge tower is timm's convnext_xxlarge (LayerNorm eps 1e-5):
    the same tensors by name and shape as ours (written in the open_clip layout), the same eps
    in every LayerNorm. Built on the meta device (846M parameters)."""
    timm = pytest.importorskip('timm')
    with torch.device('meta'):
        trunk = timm.create_model('convnext_xxlarge', pretrained=False)
        trunk.reset_classifier(0)
        ours = ConvNeXt(arch='xxlarge')
    theirs = {f'visual.trunk.{k}': v.shape for k, v in trunk.state_dict().items()
              if not k.startswith('head.')}
    exported = export_state_dict(ours.state_dict(), 'open_clip')
    stage_norms = {f'visual.trunk.norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')}
    assert {k: v.shape for k, v in exported.items() if k not in stage_norms} == theirs
    eps = {m.eps for m in trunk.modules() if isinstance(m, nn.LayerNorm)}
    assert eps == {1e-5} and ours.norm_eps == 1e-5
    assert {m.eps for m in ours.modules() if isinstance(m, nn.LayerNorm)} == eps


# -- what is told apart by keys and names ----------------------------------------------------
@pytest.mark.parametrize('layout, keys, source, final_norm, families', [
    ('timm', ['head.norm.weight'], 'hub/models--timm--convnext_base.dinov3_lvd1689m/x.safetensors',
     'stage4', ('dinov3', )),
    ('timm', ['head.norm.weight'], 'models--timm--convnext_base.eupe_lvd1689m', 'stage4',
     ('eupe', )),
    ('official', ['projectors.0.weight'], 'weights.pth', 'stage4', ('eupe', )),
    ('official', ['norm.weight'], 'weights.pth', 'stage4', ('dinov3', 'eupe')),
    ('hf_dinov3', ['layer_norm.weight'], 'my_folder', 'stage4', ('dinov3', )),
    ('official', ['norm.weight'], 'convnext_tiny_1k_224.pth', 'classifier', ()),
    ('open_clip', ['visual.trunk.stem.0.weight'], 'open_clip_pytorch_model.bin', 'classifier',
     ()),
])
def test_weight_families(layout, keys, source, final_norm, families):
    assert weight_families(layout, keys, source, final_norm) == families
    notice = licence_notice(families)
    assert (notice is None) == (not families)
