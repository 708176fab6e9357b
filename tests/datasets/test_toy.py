"""The toy data: reproducible, COCO masks consistent with their boxes and areas, occlusion,
loadable by mmdet's and mmseg's datasets with the toy configs' settings (the classes from one
place, the background a scored class of the segmentation set), and safe to write."""
import copy
import filecmp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from pycocotools.coco import COCO

from convnext_dense.datasets import (
    BACKGROUND_CLASS,
    SEG_CLASSES,
    SEG_PALETTE,
    SHAPE_CLASSES,
    SHAPE_PALETTE,
    generate_scene,
    make_toy_data,
)
from tests.helpers import ROOT, run_tool_in_process

DET_CONFIG = ROOT / 'configs/mask_rcnn/convnext_atto_toy.py'
SEG_CONFIG = ROOT / 'configs/upernet/convnext_atto_toy.py'
ARGS = dict(num_train=8, num_val=4, size=128, seed=3)


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    """Toy data written by the command-line tool."""
    root = tmp_path_factory.mktemp('toy')
    result = subprocess.run([sys.executable, ROOT / 'tools/make_toy_data.py', '--out', 'data',
                             '--num-train', '8', '--num-val', '4', '--size', '128', '--seed', '3'],
                            cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'data/toy_coco: train: 8 images' in result.stdout
    assert 'wrote in' in result.stdout
    return root / 'data'


def files_of(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob('*') if p.is_file())


def test_same_seed_same_bytes(data, tmp_path):
    make_toy_data(str(tmp_path / 'again'), **ARGS)
    names = files_of(data)
    assert names == files_of(tmp_path / 'again')
    assert len(names) == 2 + 12 + 12 * 2  # 2 jsons, 12 coco images, 12 ade image+label pairs
    _, mismatch, errors = filecmp.cmpfiles(data, tmp_path / 'again', names, shallow=False)
    assert not mismatch and not errors
    assert not list(tmp_path.glob('again/.*'))  # no temporary folder left behind

    make_toy_data(str(tmp_path / 'other'), **dict(ARGS, seed=4))
    first = 'toy_coco/annotations/instances_train.json'
    assert not filecmp.cmp(data / first, tmp_path / 'other' / first, shallow=False)


@pytest.mark.parametrize('split', ['train', 'val'])
def test_coco_masks_match_boxes_and_areas(data, split):
    coco = COCO(str(data / f'toy_coco/annotations/instances_{split}.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_CLASSES)
    assert coco.getCatIds() == list(range(1, len(SHAPE_CLASSES) + 1))
    assert len(coco.getImgIds()) == ARGS[f'num_{split}']
    forms = set()
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        assert (data / f'toy_coco/{split}' / info['file_name']).is_file()
        union = np.zeros((info['height'], info['width']), int)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            segmentation = ann['segmentation']
            forms.add('polygon' if isinstance(segmentation, list) else
                      'rle' if isinstance(segmentation['counts'], list) else 'compressed_rle')
            assert ann['iscrowd'] == 0
            mask = coco.annToMask(ann).astype(bool)
            assert mask.sum() == pytest.approx(ann['area'], abs=1)
            ys, xs = np.nonzero(mask)
            box = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            assert ann['bbox'] == pytest.approx(box, abs=1)
            union += mask
        assert union.max() <= 1  # visible parts: occluded pixels belong to one object only
    if split == 'train':
        assert forms == {'polygon', 'rle', 'compressed_rle'}


def test_occlusion_is_in_the_masks():
    rng = np.random.default_rng(0)
    occluded = 0
    for _ in range(10):
        image, objects = generate_scene(rng, 96)
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
        for obj in objects:
            assert obj.mask.sum() >= 0.4 * obj.full_area  # still recognisable
            occluded += obj.occluded
    assert occluded >= 3


def test_ade_labels(data):
    images = sorted((data / 'toy_ade/images/training').glob('*.jpg'))
    labels = sorted((data / 'toy_ade/annotations/training').glob('*.png'))
    assert [p.stem for p in images] == [p.stem for p in labels] and len(images) == 8
    import cv2
    values = set()
    background = 0
    for path in labels:
        label_map = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        values |= set(np.unique(label_map).tolist())
        background += int((label_map == SEG_CLASSES.index(BACKGROUND_CLASS)).sum())
    # every pixel holds an index into SEG_CLASSES: background 0, shape k as k + 1
    assert SEG_CLASSES == (BACKGROUND_CLASS, *SHAPE_CLASSES)
    assert SEG_PALETTE[1:] == SHAPE_PALETTE and len(SEG_PALETTE) == len(SEG_CLASSES)
    assert BACKGROUND_CLASS not in SHAPE_CLASSES and len(set(map(tuple, SEG_PALETTE))) == 6
    assert values <= set(range(len(SEG_CLASSES))) and len(values) >= 4
    assert 0 < background < len(labels) * 128 * 128


def dataset_cfg(config: Path, loader: str, data: Path) -> dict:
    cfg = Config.fromfile(str(config))
    # the classes come from the dataset class, not from the config
    assert 'metainfo' not in cfg[loader].dataset
    dataset = copy.deepcopy(cfg[loader].dataset.to_dict())
    dataset['data_root'] = str(data / Path(cfg[loader].dataset.data_root).name)
    return dataset


def test_mmdet_coco_dataset_with_toy_config(data):
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(str(DET_CONFIG))
    assert cfg.model.roi_head.bbox_head.num_classes == len(SHAPE_CLASSES)
    assert cfg.model.roi_head.mask_head.num_classes == len(SHAPE_CLASSES)
    assert cfg.val_evaluator.ann_file == 'data/toy_coco/annotations/instances_val.json'
    train = DATASETS.build(dataset_cfg(DET_CONFIG, 'train_dataloader', data))
    assert type(train).__name__ == 'ToyCocoDataset'
    assert len(train) == 8 and train.metainfo['classes'] == SHAPE_CLASSES
    assert [list(c) for c in train.metainfo['palette']] == SHAPE_PALETTE
    val = DATASETS.build(dataset_cfg(DET_CONFIG, 'val_dataloader', data))
    assert len(val) == 4
    for index in range(3):
        sample = train[index]
        inputs, instances = sample['inputs'], sample['data_samples'].gt_instances
        assert inputs.shape == (3, 128, 128)
        assert len(instances) >= 1
        assert instances.masks.masks.shape == (len(instances), 128, 128)
        assert set(instances.labels.tolist()) <= set(range(len(SHAPE_CLASSES)))
        # every box encloses its (loaded, flipped or not) mask
        for box, mask in zip(instances.bboxes.tensor.numpy(), instances.masks.masks):
            ys, xs = np.nonzero(mask)
            assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == pytest.approx(box, abs=1)


def test_mmseg_dataset_with_toy_config(data):
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(str(SEG_CONFIG))
    assert cfg.model.decode_head.num_classes == len(SEG_CLASSES)
    assert cfg.model.auxiliary_head.num_classes == len(SEG_CLASSES)
    train = DATASETS.build(dataset_cfg(SEG_CONFIG, 'train_dataloader', data))
    assert type(train).__name__ == 'ToySegDataset'
    assert len(train) == 8 and train.metainfo['classes'] == SEG_CLASSES
    assert [list(c) for c in train.metainfo['palette']] == SEG_PALETTE
    assert not train.reduce_zero_label  # the background is class 0, scored
    val = DATASETS.build(dataset_cfg(SEG_CONFIG, 'val_dataloader', data))
    assert len(val) == 4
    for index in range(3):
        sample = train[index]
        # random rescale 0.75-1.5x, then a crop of at most 128x128 (padded by the model)
        channels, height, width = sample['inputs'].shape
        assert channels == 3 and 96 <= height <= 128 and 96 <= width <= 128
        assert sample['data_samples'].gt_sem_seg.data.shape == (1, height, width)
        labels = set(sample['data_samples'].gt_sem_seg.data.unique().tolist())
        # the stored indices into SEG_CLASSES; 255 only where a crop was padded
        assert labels <= set(range(len(SEG_CLASSES))) | {255}
    import cv2
    for index in range(len(val)):
        sample = val[index]
        stored = cv2.imread(sample['data_samples'].seg_map_path, cv2.IMREAD_UNCHANGED)
        # evaluated on every pixel, as stored: nothing ignored
        assert np.array_equal(sample['data_samples'].gt_sem_seg.data[0].numpy(), stored)
        assert 0 in stored and 255 not in stored


def test_toy_configs_take_the_classes_from_the_dataset_classes():
    import mmdet.registry
    import mmseg.registry
    from mmengine.registry import DATASETS

    from convnext_dense.datasets.toy_coco import ToyCocoDataset
    from convnext_dense.datasets.toy_seg import ToySegDataset
    assert ToyCocoDataset.METAINFO == dict(classes=SHAPE_CLASSES, palette=SHAPE_PALETTE)
    assert ToySegDataset.METAINFO == dict(classes=SEG_CLASSES, palette=SEG_PALETTE)
    # registered at the root, found from mmdet's / mmseg's registries, clashing with no name
    # of theirs
    for registry, name, dataset in ((mmdet.registry.DATASETS, 'ToyCocoDataset', ToyCocoDataset),
                                    (mmseg.registry.DATASETS, 'ToySegDataset', ToySegDataset)):
        assert DATASETS.get(name) is dataset and registry.get(name) is dataset
        assert name not in registry.module_dict
    # the class names are written in convnext_dense/datasets/toy.py only
    for config in (DET_CONFIG, SEG_CONFIG):
        text = config.read_text()
        assert not any(f"'{name}'" in text for name in SEG_CLASSES), config


def test_refuses_a_non_empty_output(tmp_path):
    stray = tmp_path / 'toy_ade' / 'mine.txt'
    stray.parent.mkdir()
    stray.write_text('keep me')
    with pytest.raises(FileExistsError, match=r"'.*toy_ade' exists and is not empty.*overwrite"):
        make_toy_data(str(tmp_path), num_train=1, num_val=1, size=64)
    assert stray.read_text() == 'keep me'
    assert not (tmp_path / 'toy_coco').exists()  # nothing written before refusing

    summary = make_toy_data(str(tmp_path), num_train=1, num_val=1, size=64, overwrite=True)
    assert not stray.exists()
    assert summary['ade_training']['images'] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['toy_ade', 'toy_coco']


def test_cli_refuses_a_non_empty_output(data, monkeypatch):
    # run in this process: sys.exit(message) is exit status 1 and the message on stderr
    with pytest.raises(SystemExit) as info:
        run_tool_in_process('tools/make_toy_data.py', '--out', data, monkeypatch=monkeypatch)
    message = info.value.code
    assert isinstance(message, str) and message.startswith('error: '), message
    assert f"{data / 'toy_coco'}' exists and is not empty" in message
    assert '--overwrite' in message


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_train=0), 'num_train must be a positive integer'),
    (dict(size=16), 'size must be an integer >= 32'),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_toy_data(str(tmp_path), **kwargs)
    assert not any(tmp_path.iterdir())
