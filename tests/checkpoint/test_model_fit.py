"""checkpoint/model_fit.py: whole detector checkpoints (what tools/test.py loads) fitted to the
model: mmdet's own mmpretrain-backbone checkpoints converted, the project's as they are, and the
errors that name the checkpoint and the keys."""
import pytest
import torch

from convnext_dense.checkpoint import fit_model_state_dict
from convnext_dense.models import ConvNeXt
from tests.checkpoint.release_files import official_release
from tests.helpers import build_mask_rcnn
from tests.numerics import assert_close_to_reference, reduction_depth


def upstream_mask_rcnn():
    """mmdet 3.x's own ConvNeXt route: backbone=dict(type='mmpretrain.ConvNeXt'); the checkpoints
    it writes hold the backbone in mmpretrain names."""
    from convnext_dense.compat import import_mmpretrain
    import_mmpretrain()
    return build_mask_rcnn('atto', backbone_type='mmpretrain.ConvNeXt', out_indices=[0, 1, 2, 3],
                           gap_before_final_norm=False, use_grn=True, layer_scale_init_value=0.)


def test_fit_whole_detector_converts_an_mmpretrain_backbone():
    upstream = upstream_mask_rcnn().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in upstream.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.02)
    ours = build_mask_rcnn('atto').eval()  # V2 atto, as mmpretrain's with use_grn
    state, notes = fit_model_state_dict(ours.state_dict(), upstream.state_dict())
    backbone_tensors = sum(k.startswith('backbone.') for k in ours.state_dict())
    assert notes == [f'backbone converted from the mmpretrain layout ({backbone_tensors} '
                     'tensors)']
    ours.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 64, generator=generator)
    depth = reduction_depth(ours.backbone, ours.neck, grn_positions=64 * 64 // 16)
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(ours.neck(ours.backbone(x)),
                                       upstream.neck(upstream.backbone(x)))):
            assert_close_to_reference(a, b, depth, name=f'FPN level {i}')


def test_fit_whole_detector_in_project_layout_as_is():
    model = build_mask_rcnn('atto')
    source = model.state_dict()
    state, notes = fit_model_state_dict(source, {**source, 'extra.weight': torch.zeros(1)})
    assert notes == ["1 tensors not in the model, not loaded: ['extra.weight']"]
    assert all(state[k] is v for k, v in source.items())


def test_fit_whole_model_errors_name_the_checkpoint_and_keys():
    model_state = build_mask_rcnn('atto').state_dict()
    backbone_only = official_release(ConvNeXt(arch='atto'))['model']
    with pytest.raises(ValueError, match=r"^ckpt holds only a ConvNeXt backbone \(official "
                       r"layout\), not a whole model; .*model\.backbone\.init_cfg\.checkpoint"):
        fit_model_state_dict(model_state, backbone_only, source='ckpt')
    other_classes = dict(model_state)
    other_classes['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(11, 1024)
    with pytest.raises(ValueError, match=r"ckpt does not fit this model: 'roi_head\.bbox_head\."
                       r"fc_cls\.weight' has shape \(11, 1024\) in the checkpoint but \(81, "
                       r"1024\) in the model"):
        fit_model_state_dict(model_state, other_classes, source='ckpt')
    segmentor = {k: v for k, v in model_state.items() if k.startswith('backbone.')}
    segmentor['decode_head.conv_seg.weight'] = torch.zeros(150, 512, 1, 1)
    with pytest.raises(ValueError, match=r"ckpt lacks \d+ of the model's \d+ tensors, e\.g\. "
                       r"\['neck\.lateral_convs\.0\.conv\.weight'"):
        fit_model_state_dict(model_state, segmentor, source='ckpt')
