"""Train an mmdet or mmseg config (the task comes from its ``default_scope``).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]] [--amp]
                          [--auto-scale-lr] [--cfg-options k=v ...]
                          [--launcher none|pytorch|slurm] [--tensorboard]
                          [--bf16] [--channels-last] [--compile]

Multi-GPU / multi-node: ``tools/dist_train.sh CONFIG GPUS [args]``; Slurm:
``tools/slurm_train.sh PARTITION JOB CONFIG WORK_DIR``.
"""
import argparse

from mmengine.config import DictAction

import convnext_dense  # noqa: F401  (registers the plugin, safe checkpoint loading)
from convnext_dense.engine.fast_path import add_fast_path_arguments
from convnext_dense.engine.run_config import make_runner, prepare_train_cfg


def parse_args():
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/CONFIG_NAME)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help="resume from the latest checkpoint in the work dir ('auto', the "
                        'default when the flag has no value) or from the given checkpoint')
    parser.add_argument('--amp', action='store_true',
                        help='fp16 automatic mixed precision (dynamic loss scale)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate to the total batch size (GPUs x '
                        'batch per GPU) from the config\'s auto_scale_lr.base_batch_size')
    parser.add_argument('--tensorboard', action='store_true',
                        help='also log to TensorBoard (WORK_DIR/TIMESTAMP/vis_data)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. train_cfg.max_iters=100; a key that '
                        'is not in the config is an error')
    add_fast_path_arguments(parser)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)  # set by torch.distributed.launch
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = prepare_train_cfg(args.config, work_dir=args.work_dir, resume=args.resume,
                            amp=args.amp, cfg_options=args.cfg_options, launcher=args.launcher,
                            tensorboard=args.tensorboard, auto_scale_lr=args.auto_scale_lr,
                            bf16=args.bf16, channels_last=args.channels_last,
                            compile=args.compile)
    make_runner(cfg).train()


if __name__ == '__main__':
    main()
