"""checkpoint/loading.py: backbone checkpoints loaded through ``load_pretrained`` and
``init_cfg`` (V1 official releases in .pth and .safetensors, mmdet 2.x fine-tuned detectors, timm
files; V2 FCMAE pre-training files sparse and dense, official IN-1K / IN-22K fine-tuned
classifiers and mmpretrain's converted copies), each written in its own form and compared tensor
by tensor with what was written; the errors, unsafe pickles, and the conversion tool."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from convnext_dense.checkpoint import (
    convert_checkpoint_file,
    detect_layout,
    export_state_dict,
    load_pretrained,
)
from convnext_dense.fileio import UnsafeCheckpointError
from convnext_dense.models import ConvNeXt
from tests.checkpoint.release_files import (
    SMALL,
    STAGE_NORMS,
    assert_loaded,
    official_release,
    official_v2_release,
    random_state,
    remapped_fcmae,
    small_v2,
    sparse_fcmae_checkpoint,
)
from tests.helpers import ROOT


# -- V1 files -----------------------------------------------------------------------------------
@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_loads_official_release_file(tmp_path, suffix):
    model = ConvNeXt(arch='atto')
    release = official_release(model)
    path = tmp_path / f'convnext_atto_1k{suffix}'
    if suffix == '.safetensors':
        from safetensors.torch import save_file
        save_file(release['model'], str(path))
    else:
        torch.save(release, path)
    report = load_pretrained(model, str(path))
    assert report.layout == 'official'
    assert sorted(report.dropped_classifier) == ['head.bias', 'head.weight', 'norm.bias',
                                                 'norm.weight']
    for key, value in model.state_dict().items():
        if not key.startswith('norm'):
            assert torch.equal(value, release['model'][key]), key


def test_loads_finetuned_mmdet2_detector(tmp_path):
    """The paper's fine-tuned COCO models: mmdet 2.x, backbone under 'backbone.'."""
    model = ConvNeXt(arch='atto')
    backbone = random_state(model)
    state = {f'backbone.{k}': v for k, v in backbone.items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 40, 1, 1)
    torch.save({'meta': {'epoch': 36}, 'state_dict': state}, tmp_path / 'cascade.pth')
    report = load_pretrained(model, str(tmp_path / 'cascade.pth'))
    assert report.prefix == 'backbone.' and report.ignored == ['neck.lateral_convs.0.conv.weight']
    for key, value in model.state_dict().items():
        assert torch.equal(value, backbone[key]), key


def test_init_cfg_pretrained(tmp_path):
    source = ConvNeXt(arch='atto', version='v2')
    state = export_state_dict(random_state(source), 'timm')
    torch.save(state, tmp_path / 'timm.pth')
    model = ConvNeXt(arch='atto', version='v2',
                     init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'timm.pth')))
    model.init_weights()
    assert torch.equal(model.stages[2][3].grn.gamma.flatten(),
                       state['stages.2.blocks.3.mlp.grn.weight'])


# -- errors -------------------------------------------------------------------------------------
def test_another_arch_names_first_mismatch(tmp_path):
    torch.save(official_release(ConvNeXt(arch='femto')), tmp_path / 'femto.pth')
    with pytest.raises(ValueError, match=r"another ConvNeXt arch.*'downsample_layers\.0\.0\."
                       r"weight' has shape \(48, 3, 4, 4\) in the checkpoint but \(40, 3, 4, 4\)"):
        load_pretrained(ConvNeXt(arch='atto'), str(tmp_path / 'femto.pth'))


def test_other_version_lacks_weights(tmp_path):
    torch.save(official_release(ConvNeXt(arch='atto', version='v1')), tmp_path / 'v1.pth')
    with pytest.raises(ValueError, match=r'lacks .* weights.*grn'):
        load_pretrained(ConvNeXt(arch='atto', version='v2'), str(tmp_path / 'v1.pth'))


def test_not_a_checkpoint_file(tmp_path):
    (tmp_path / 'x.pth').write_bytes(b'\x00garbage')
    with pytest.raises(ValueError, match=r"'.*x\.pth' is not a PyTorch checkpoint"):
        load_pretrained(ConvNeXt(arch='atto'), str(tmp_path / 'x.pth'))


class RunsCode:
    def __reduce__(self):
        return (exec, ('import os; os.system("touch pwned")',))


def test_pickle_that_runs_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({'model': RunsCode()}, tmp_path / 'evil.pth')
    with pytest.raises(UnsafeCheckpointError, match='refusing to load'):
        load_pretrained(ConvNeXt(arch='atto'), str(tmp_path / 'evil.pth'))
    assert not (tmp_path / 'pwned').exists()


# -- V2 files, each form loaded through init_cfg ------------------------------------------------
def test_loads_sparse_fcmae_pretraining_file(tmp_path):
    checkpoint = sparse_fcmae_checkpoint(SMALL['depths'], SMALL['dims'])
    path = tmp_path / 'convnextv2_small_1k_224_fcmae.pt'
    torch.save(checkpoint, path)
    assert detect_layout(checkpoint['model']) == ('fcmae', 'encoder.')
    model = small_v2(str(path))
    assert_loaded(model, remapped_fcmae(checkpoint))
    report = load_pretrained(small_v2(), str(path))
    assert report.layout == 'fcmae' and report.prefix == 'encoder.'
    assert sorted(report.ignored) == sorted(k for k in checkpoint['model']
                                            if not k.startswith('encoder.'))


def test_loads_sparse_fcmae_of_a_published_size(tmp_path):
    """atto, the smallest published size (stage depths 2/2/6/2)."""
    checkpoint = sparse_fcmae_checkpoint([2, 2, 6, 2], [40, 80, 160, 320], seed=3)
    torch.save(checkpoint, tmp_path / 'convnextv2_atto_1k_224_fcmae.pt')
    model = small_v2(str(tmp_path / 'convnextv2_atto_1k_224_fcmae.pt'), arch='atto')
    assert_loaded(model, remapped_fcmae(checkpoint))


@pytest.mark.parametrize('form', ['released', 'encoder_with_decoder'])
def test_loads_dense_fcmae_file(tmp_path, form):
    """The released ``pt_only/*_fcmae.pt`` files are dense in official names (no prefix, no
    decoder, facebookresearch/ConvNeXt-V2 issue #47); a dense FCMAE model's own state dict has
    the ``encoder.`` prefix and the decoder beside it."""
    expected = remapped_fcmae(sparse_fcmae_checkpoint(SMALL['depths'], SMALL['dims'], seed=4))
    if form == 'released':
        state = dict(expected)
    else:
        decoder = {k: v for k, v in sparse_fcmae_checkpoint(
            SMALL['depths'], SMALL['dims'], seed=5)['model'].items()
            if not k.startswith('encoder.')}
        state = {**{f'encoder.{k}': v for k, v in expected.items()}, **decoder}
    torch.save({'model': state}, tmp_path / 'fcmae.pt')
    model = small_v2(str(tmp_path / 'fcmae.pt'))
    assert_loaded(model, expected)
    report = load_pretrained(small_v2(), str(tmp_path / 'fcmae.pt'))
    assert report.layout == 'official'
    assert report.prefix == ('' if form == 'released' else 'encoder.')


def test_sparse_and_dense_fcmae_give_the_same_model(tmp_path):
    checkpoint = sparse_fcmae_checkpoint(SMALL['depths'], SMALL['dims'], seed=6)
    torch.save(checkpoint, tmp_path / 'sparse.pt')
    torch.save({'model': remapped_fcmae(checkpoint)}, tmp_path / 'dense.pt')
    # the per-stage norms, absent from both, start at LayerNorm's (deterministic) init
    sparse, dense = small_v2(str(tmp_path / 'sparse.pt')), small_v2(str(tmp_path / 'dense.pt'))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        for a, b in zip(sparse.eval()(x), dense.eval()(x)):
            assert torch.equal(a, b)


@pytest.mark.parametrize('release', ['im1k', 'im22k'])
def test_loads_official_finetuned_release(tmp_path, release):
    """``im1k/convnextv2_*_1k_224_ema.pt`` and ``im22k/convnextv2_*_22k_*_ema.pt``: the
    classifier (final norm and head) is dropped."""
    num_classes = 1000 if release == 'im1k' else 21841
    checkpoint = official_v2_release(small_v2(), num_classes=num_classes)
    torch.save(checkpoint, tmp_path / f'{release}.pt')
    model = small_v2(str(tmp_path / f'{release}.pt'))
    expected = {k: v for k, v in checkpoint['model'].items()
                if not k.startswith(('head.', 'norm.'))}
    assert expected['stages.0.0.grn.gamma'].shape == (1, 1, 1, 4 * SMALL['dims'][0])
    assert_loaded(model, expected)
    report = load_pretrained(small_v2(), str(tmp_path / f'{release}.pt'))
    assert report.layout == 'official'
    assert sorted(report.dropped_classifier) == ['head.bias', 'head.weight', 'norm.bias',
                                                 'norm.weight']


def test_loads_mmpretrain_v2_copy(tmp_path):
    """mmpretrain's converted V2 classifiers (``convnext-v2-*_3rdparty-fcmae_in1k``, ...):
    ``backbone.`` names of its ConvNeXt with ``use_grn=True``, GRN ``gamma``/``beta`` of shape
    (C,), its final ``norm3`` and ``head.fc``. Written from mmpretrain's own model."""
    from convnext_dense.compat import import_mmpretrain
    mmpretrain_models = import_mmpretrain()
    reference = mmpretrain_models.ConvNeXt(arch='atto', use_grn=True, layer_scale_init_value=0.,
                                           gap_before_final_norm=False)
    generator = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for param in reference.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))
    backbone = reference.state_dict()
    assert backbone['stages.0.0.grn.gamma'].shape == (160, )
    state = {f'backbone.{k}': v for k, v in backbone.items()}
    state.update({'head.fc.weight': torch.zeros(1000, 320), 'head.fc.bias': torch.zeros(1000)})
    torch.save({'state_dict': state, 'meta': {'mmpretrain_version': '1.2.0'}},
               tmp_path / 'convnext-v2-atto_3rdparty-fcmae_in1k.pth')
    model = small_v2(str(tmp_path / 'convnext-v2-atto_3rdparty-fcmae_in1k.pth'), arch='atto')

    renames = {'depthwise_conv': 'dwconv', 'pointwise_conv1': 'pwconv1',
               'pointwise_conv2': 'pwconv2'}
    expected = {}
    for key, value in backbone.items():
        for theirs, ours in renames.items():
            key = key.replace(f'.{theirs}.', f'.{ours}.')
        expected[key] = value.reshape(1, 1, 1, -1) if '.grn.' in key else value
    ours = model.state_dict()
    assert set(ours) - set(STAGE_NORMS[:6]) == set(expected)  # norm0..2: not in a classifier
    for key, value in expected.items():
        assert torch.equal(ours[key], value), key
    reference.eval()  # mmpretrain's train() returns None
    x = torch.randn(1, 3, 64, 64, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x)[3], reference(x)[0], rtol=1e-4, atol=1e-4)


# -- conversion tool ----------------------------------------------------------------------------
def test_convert_checkpoint_cli(tmp_path):
    source = ConvNeXt(arch='atto')
    state = random_state(source)
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in
                               export_state_dict(state, 'mmpretrain').items()}},
               tmp_path / 'mmpretrain.pth')
    result = subprocess.run([sys.executable, str(ROOT / 'tools/convert_checkpoint.py'),
                             str(tmp_path / 'mmpretrain.pth'), str(tmp_path / 'out.pth')],
                            capture_output=True, text=True, check=True)
    assert 'mmpretrain' in result.stdout
    converted = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert set(converted['state_dict']) == set(state)
    model = ConvNeXt(arch='atto', init_cfg=dict(type='Pretrained',
                                                checkpoint=str(tmp_path / 'out.pth')))
    model.init_weights()
    assert torch.equal(model.stages[1][0].dwconv.weight, state['stages.1.0.dwconv.weight'])


def test_converts_sparse_fcmae_file_to_official_and_back(tmp_path):
    checkpoint = sparse_fcmae_checkpoint(SMALL['depths'], SMALL['dims'], seed=9)
    torch.save(checkpoint, tmp_path / 'sparse.pt')
    report = convert_checkpoint_file(str(tmp_path / 'sparse.pt'), str(tmp_path / 'dense.pth'))
    assert report.layout == 'fcmae'
    dense = torch.load(tmp_path / 'dense.pth', weights_only=True)['state_dict']
    expected = remapped_fcmae(checkpoint)
    assert dense.keys() == expected.keys()
    assert all(torch.equal(dense[k], expected[k]) for k in expected)
    # written back in the sparse layout: the encoder as FCMAE stores it
    sparse = {f'encoder.{k}': v for k, v in export_state_dict(dense, 'fcmae').items()}
    encoder = {k: v for k, v in checkpoint['model'].items() if k.startswith('encoder.')}
    assert sparse.keys() == encoder.keys()
    assert all(torch.equal(sparse[k], encoder[k]) for k in encoder)
