"""convnext_dense.apis: which class names and palette a demo picture is drawn with, the
ground-truth files it reads, and the pictures of real (untrained) models it draws."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmseg.datasets import ADE20KDataset
from mmseg.registry import DATASETS

from convnext_dense.apis import (
    _reduce_zero_label,
    coco_gt_instances,
    draw_prediction,
    read_coco_instances,
    read_image,
    read_label_map,
)
from convnext_dense.datasets import COCO_METAINFO, SEG_METAINFO, make_toy_data
from convnext_dense.engine.build import dataset_meta
from convnext_dense.visualization import MIN_PANEL_HEIGHT, label_outlines, upscale
from tests.helpers import ROOT

TOY_SEG = f'{ROOT}/configs/upernet/convnext_atto_toy.py'
ADE = f'{ROOT}/configs/upernet/convnext_t_ade20k.py'


def test_checkpoint_meta_first_then_the_config():
    cfg = Config.fromfile(TOY_SEG)
    mmengine_meta = dict(dataset_meta=dict(classes=('a', 'b'), palette=[[1, 2, 3], [4, 5, 6]]))
    assert dataset_meta(mmengine_meta, cfg) == mmengine_meta['dataset_meta']
    # mmcv 1.x (mmdet 2.x / mmseg 0.x) checkpoints
    mmcv1_meta = dict(CLASSES=['a', 'b'], PALETTE=[[1, 2, 3], [4, 5, 6]])
    assert dataset_meta(mmcv1_meta, cfg) == dict(classes=('a', 'b'),
                                                 palette=[[1, 2, 3], [4, 5, 6]])
    # no meta: the config's dataset class's (the toy set's, ADE20K's 150 classes)
    assert dataset_meta({}, cfg)['classes'] == SEG_METAINFO['classes']
    ade = dataset_meta({}, Config.fromfile(ADE))
    assert ade['classes'] == ADE20KDataset.METAINFO['classes'] and len(ade['classes']) == 150


# -- pictures: input, ground truth and prediction of a real (untrained) model ------------------
DET = f'{ROOT}/configs/mask_rcnn/convnext_atto_toy.py'


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy')
    make_toy_data(str(root / 'data'), num_train=1, num_val=2)
    return root / 'data'


def save_untrained(config: str, scope: str, path: Path) -> Path:
    """A checkpoint of the config's model at its init, as tools/train.py saves one (meta with
    dataset_meta)."""
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(config)
    init_default_scope(scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    metainfo = SEG_METAINFO if scope == 'mmseg' else COCO_METAINFO
    meta = dict(dataset_meta=dict(classes=tuple(metainfo['classes']),
                                  palette=[list(c) for c in metainfo['palette']]))
    torch.save(dict(meta=meta, state_dict=model.state_dict()), path)
    return path


def decoded(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, f'{path} does not decode'
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_segmentation_picture_shows_input_ground_truth_and_prediction(toy, tmp_path):
    checkpoint = save_untrained(TOY_SEG, 'mmseg', tmp_path / 'seg.pth')
    image = toy / 'toy_ade/images/validation/toy_validation_000000.jpg'
    label_file = toy / 'toy_ade/annotations/validation/toy_validation_000000.png'
    out = tmp_path / 'pictures' / 'seg.png'
    picture = draw_prediction(str(image), TOY_SEG, str(checkpoint), str(out),
                              gt=str(label_file))

    assert np.array_equal(decoded(out), picture.image)  # written losslessly, as returned
    rgb = read_image(str(image))
    assert picture.scale == 1 and picture.image.shape[0] > MIN_PANEL_HEIGHT
    titles = [title for title, _ in picture.panels]
    assert titles == ['input 128x128 (shown x3)', 'ground truth', 'prediction']
    panels = [box.crop(picture.image) for _, box in picture.panels]
    assert all(panel.shape == (384, 384, 3) for panel in panels)
    big = upscale(rgb, 3)
    assert np.array_equal(panels[0], big)
    # ground truth: the toy label map stores every pixel's class, the background's (0)
    # included; class k is blended half and half with its colour
    stored = upscale(cv2.imread(str(label_file), cv2.IMREAD_UNCHANGED), 3)
    # ... and each region is outlined in white on its inside
    rims = label_outlines(stored, len(SEG_METAINFO['classes']))
    assert rims.any() and (panels[1][rims] == 255).all()
    for label, colour in enumerate(SEG_METAINFO['palette']):
        where = (stored == label) & ~rims
        if where.any():
            expected = big[where] * 0.5 + np.array(colour) * 0.5
            assert np.abs(panels[1][where] - expected).max() <= 1, label
    assert (stored == 0).any() and (stored > 0).any()
    assert not np.array_equal(panels[2], big)  # every pixel gets a predicted class
    assert [name for name, _ in picture.legend] == list(SEG_METAINFO['classes'])


def test_detection_picture_shows_input_ground_truth_and_prediction(toy, tmp_path):
    checkpoint = save_untrained(DET, 'mmdet', tmp_path / 'det.pth')
    image = toy / 'toy_coco/val/000001.png'
    ann_file = toy / 'toy_coco/annotations/instances_val.json'
    coco = json.loads(ann_file.read_text())
    image_id, = [r['id'] for r in coco['images'] if r['file_name'] == '000001.png']
    boxes = [a['bbox'] for a in coco['annotations'] if a['image_id'] == image_id]
    out = tmp_path / 'det.png'
    # an untrained detector scores every class about 1/6: threshold 0 shows its detections
    picture = draw_prediction(str(image), DET, str(checkpoint), str(out), score_thr=0.0,
                              gt=str(ann_file))

    assert np.array_equal(decoded(out), picture.image)
    titles = [title for title, _ in picture.panels]
    assert titles[:2] == ['input 128x128 (shown x3)', f'ground truth: {len(boxes)} objects']
    assert titles[2].startswith('prediction: ') and titles[2].endswith(' with score > 0')
    assert int(titles[2].split()[1]) > 0
    panels = [box.crop(picture.image) for _, box in picture.panels]
    big = upscale(read_image(str(image)), 3)
    assert np.array_equal(panels[0], big)
    # the ground truth is drawn in each of its boxes and nowhere far from them
    near = np.zeros(big.shape[:2], bool)
    for x, y, w, h in boxes:
        x, y, w, h = (round(v * 3) for v in (x, y, w, h))
        assert not np.array_equal(panels[1][y:y + h, x:x + w], big[y:y + h, x:x + w])
        near[max(0, y - 30):y + h + 30, max(0, x - 30):x + w + 30] = True
    assert np.array_equal(panels[1][~near], big[~near])
    assert not np.array_equal(panels[2], big)
    # the same picture with the image given by id; an unknown id is an error naming it
    by_id = draw_prediction(str(image), DET, str(checkpoint), str(tmp_path / 'id.png'),
                            score_thr=0.0, gt=str(ann_file), gt_id=image_id)
    assert [title for title, _ in by_id.panels][:2] == titles[:2]
    with pytest.raises(ValueError, match=f"has no image with id {image_id + 100}"):
        draw_prediction(str(image), DET, str(checkpoint), str(tmp_path / 'x.png'),
                        gt=str(ann_file), gt_id=image_id + 100)
    assert not (tmp_path / 'x.png').exists()


def test_ground_truth_files_are_checked(toy, tmp_path):
    image = toy / 'toy_coco/val/000000.png'
    ann_file = toy / 'toy_coco/annotations/instances_val.json'
    record, annotations = read_coco_instances(str(ann_file), str(image), (128, 128))
    assert record['file_name'] == '000000.png'
    coco = json.loads(ann_file.read_text())
    expected = [a for a in coco['annotations'] if a['image_id'] == record['id']]
    assert [a['bbox'] for a in annotations] == [
        [x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in expected)]
    instances = coco_gt_instances(annotations, COCO_METAINFO['classes'], (128, 128))
    assert instances.labels.tolist() == [a['category_id'] - 1 for a in expected]
    # masks decode to the annotated areas (polygons and both RLE forms)
    assert [int(m.sum()) for m in instances.masks] == [int(a['area']) for a in expected]
    with pytest.raises(ValueError, match="is not among the model's classes"):
        coco_gt_instances(annotations, ('circle',), (128, 128))
    with pytest.raises(ValueError, match=r"recorded as 128x128, but .* is 64x128"):
        read_coco_instances(str(ann_file), str(image), (128, 64))
    with pytest.raises(ValueError, match="has no image named 'other.png'"):
        read_coco_instances(str(ann_file), str(tmp_path / 'other.png'), (128, 128))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        read_coco_instances(str(tmp_path / 'none.json'), str(image), (128, 128))

    label_file = toy / 'toy_ade/annotations/validation/toy_validation_000000.png'
    stored = cv2.imread(str(label_file), cv2.IMREAD_UNCHANGED)
    labels = read_label_map(str(label_file), (128, 128), reduce_zero_label=True)
    assert np.array_equal(labels, np.where(stored == 0, 255, stored.astype(np.int64) - 1))
    assert np.array_equal(read_label_map(str(label_file), (128, 128), False), stored)
    with pytest.raises(ValueError, match=r'is 128x128, the image 100x128'):
        read_label_map(str(label_file), (128, 100), True)
    colour = toy / 'toy_ade/images/validation/toy_validation_000000.jpg'
    with pytest.raises(ValueError, match='expected a single-channel image'):
        read_label_map(str(colour), (128, 128), True)
    with pytest.raises(FileNotFoundError, match='label map .* does not exist'):
        read_label_map(str(tmp_path / 'none.png'), (128, 128), True)


def test_reduce_zero_label_comes_from_the_config():
    # the toy set's dataset class scores its background (False), the ADE20K config sets it in
    # LoadAnnotations
    assert _reduce_zero_label(Config.fromfile(TOY_SEG), DATASETS) is False
    assert _reduce_zero_label(Config.fromfile(ADE), DATASETS) is True
    cfg = Config.fromfile(TOY_SEG)
    cfg.test_dataloader.dataset.reduce_zero_label = True
    assert _reduce_zero_label(cfg, DATASETS) is True
