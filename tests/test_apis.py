"""convnext_dense.apis: which class names and palette a demo picture is drawn with."""
from mmengine.config import Config
from mmseg.datasets import ADE20KDataset
from mmseg.registry import DATASETS

from convnext_dense.apis import _dataset_meta
from convnext_dense.learning_check import REPO_ROOT

TOY_SEG = f'{REPO_ROOT}/configs/upernet/convnext_atto_toy.py'
ADE = f'{REPO_ROOT}/configs/upernet/convnext_t_ade20k.py'


def test_checkpoint_meta_first_then_the_config():
    cfg = Config.fromfile(TOY_SEG)
    mmengine_meta = dict(dataset_meta=dict(classes=('a', 'b'), palette=[[1, 2, 3], [4, 5, 6]]))
    assert _dataset_meta(mmengine_meta, cfg, DATASETS) == mmengine_meta['dataset_meta']
    # mmcv 1.x (mmdet 2.x / mmseg 0.x) checkpoints
    mmcv1_meta = dict(CLASSES=['a', 'b'], PALETTE=[[1, 2, 3], [4, 5, 6]])
    assert _dataset_meta(mmcv1_meta, cfg, DATASETS) == dict(classes=('a', 'b'),
                                                           palette=[[1, 2, 3], [4, 5, 6]])
    # no meta: the toy config's metainfo, or the dataset class's (ADE20K's 150 classes)
    assert _dataset_meta({}, cfg, DATASETS)['classes'] == tuple(cfg.classes)
    ade = _dataset_meta({}, Config.fromfile(ADE), DATASETS)
    assert ade['classes'] == ADE20KDataset.METAINFO['classes'] and len(ade['classes']) == 150
