"""Dataset checks before a run: errors name the file and the key."""
import json

import pytest
from mmengine.config import Config

from convnext_dense.config.data_checks import check_datasets
from convnext_dense.evaluation.annotations import check_coco_annotation


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def coco(**changes):
    data = dict(images=[dict(id=1, file_name='a.png', width=8, height=8)],
                annotations=[dict(id=1, image_id=1, category_id=1, bbox=[0, 0, 2, 2], area=4,
                                  iscrowd=0)],
                categories=[dict(id=1, name='circle')])
    data.update(changes)
    return data


def test_valid_coco(tmp_path):
    assert check_coco_annotation(write_json(tmp_path / 'ok.json', coco()))['images']


def test_not_coco(tmp_path):
    path = write_json(tmp_path / 'labels.json', {'labels': [1, 2]})
    with pytest.raises(ValueError, match=r"labels\.json' is not a COCO annotation file.*"
                       r"'images', 'annotations', 'categories'"):
        check_coco_annotation(path)


def test_not_json(tmp_path):
    (tmp_path / 'broken.json').write_text('{"images": [')
    with pytest.raises(ValueError, match=r"broken\.json' is not JSON"):
        check_coco_annotation(str(tmp_path / 'broken.json'))


def test_category_out_of_range(tmp_path):
    bad = coco(annotations=[dict(id=7, image_id=1, category_id=91, bbox=[0, 0, 1, 1])])
    with pytest.raises(ValueError, match=r'annotations\[0\] \(id 7\) has category_id 91.*\[1\]'):
        check_coco_annotation(write_json(tmp_path / 'bad.json', bad))


def test_missing_data_root_names_the_key(tmp_path):
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='RepeatDataset', times=2, dataset=dict(type='CocoDataset',
                                                    data_root=str(tmp_path / 'nowhere'))))))
    with pytest.raises(FileNotFoundError, match=r'train_dataloader\.dataset \(CocoDataset\): '
                       r"data_root '.*nowhere' does not exist"):
        check_datasets(cfg)


def test_annotation_checked_through_config(tmp_path):
    (tmp_path / 'img').mkdir()
    write_json(tmp_path / 'ann.json', {'not': 'coco'})
    cfg = Config(dict(val_dataloader=dict(dataset=dict(
        type='CocoDataset', data_root=str(tmp_path), ann_file='ann.json',
        data_prefix=dict(img='img')))))
    with pytest.raises(ValueError, match=r"val_dataloader\.dataset.*ann\.json' is not a COCO"):
        check_datasets(cfg)
