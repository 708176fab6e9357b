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

import convnext_dense  # noqa: F401  (registers the plugin, safe checkpoint loading)
from convnext_dense.engine.run_config import DictAction, make_runner, prepare_test_cfg


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
    # default None: a flag left out keeps the config's fast_path value
    parser.add_argument('--bf16', action='store_true', default=None,
                        help='bfloat16 autocast (fp32 RoIAlign and NMS)')
    parser.add_argument('--channels-last', action='store_true', default=None,
                        help='channels-last weights and activations (cuDNN kernels for the '
                        '7x7 depthwise convolutions under bf16/fp16)')
    parser.add_argument('--compile', action='store_true', default=None,
                        help='torch.compile for fixed shapes: the backbone on size-bucketed '
                        'batches (detection), the encoder-decoder path (segmentation)')
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
