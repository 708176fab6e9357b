"""Evaluate a checkpoint on an mmdet or mmseg config: COCO box/mask AP (the 12 standard
numbers per iou type, pycocotools through mmdet's CocoMetric) or ADE20K mIoU/mAcc/aAcc (mmseg's
IoUMetric).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--tta]
                         [--show-dir DIR] [--cfg-options k=v ...] [--launcher ...]
                         [--bf16] [--channels-last] [--compile]

``--out``: detection, a .pkl of the raw predictions; segmentation, a folder of predicted
label maps. COCO result json files for ``tools/coco_eval.py``:
``--cfg-options test_evaluator.outfile_prefix=work_dirs/results``.
"""
import argparse

from mmengine.config import DictAction

import convnext_dense  # noqa: F401  (registers the plugin, safe checkpoint loading)
from convnext_dense.engine.fast_path import add_fast_path_arguments
from convnext_dense.engine.run_config import make_runner, prepare_test_cfg


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the evaluation logs go')
    parser.add_argument('--out', help='save raw predictions (.pkl for detection, a folder of '
                        'label maps for segmentation)')
    parser.add_argument('--tta', action='store_true',
                        help="multi-scale + flip test with the config's tta_model/tta_pipeline")
    parser.add_argument('--show-dir', help='save pictures of the predictions here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys; a key that is not in the config is an '
                        'error')
    add_fast_path_arguments(parser)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = prepare_test_cfg(args.config, args.checkpoint, work_dir=args.work_dir, out=args.out,
                           tta=args.tta, show_dir=args.show_dir, cfg_options=args.cfg_options,
                           launcher=args.launcher, bf16=args.bf16,
                           channels_last=args.channels_last, compile=args.compile)
    make_runner(cfg).test()


if __name__ == '__main__':
    main()
