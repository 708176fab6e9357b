"""Parameters and FLOPs of a config's model (fvcore counting: one multiply-add = one FLOP).

    python tools/analysis/get_flops.py configs/mask_rcnn/cascade_convnext_t_coco_3x.py
    python tools/analysis/get_flops.py configs/upernet/convnext_t_ade20k.py --shape 512 2048

Default input: the config's ``flops_shape`` (H W): 800x1280 for detection, 512x2048 (512
crops) or 640x2560 (640 crops) for UperNet, the sizes of the paper's FLOPs. See
:mod:`convnext_dense.analysis.complexity` for what is counted.
"""
import argparse
import logging
import warnings

from mmengine.config import DictAction
from mmengine.logging import MMLogger

from convnext_dense.analysis import model_complexity
from convnext_dense.config import load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Parameters and FLOPs of a model config')
    parser.add_argument('config', help='config file')
    parser.add_argument('--shape', type=int, nargs='+', metavar='N',
                        help='input size: H W, or one N for N x N (default: the config\'s '
                             'flops_shape, else the paper\'s size)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value; a key that is not in '
                        'the config is an error')
    parser.add_argument('--verbose', action='store_true',
                        help="show the FLOP counter's warnings (ops it does not count)")
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H W or N')
    return args


def main(argv=None):
    args = parse_args(argv)
    if not args.verbose:
        warnings.filterwarnings('ignore')
        MMLogger.get_instance('mmengine').setLevel(logging.ERROR)
    cfg = load_config(args.config, args.cfg_options)  # checked --cfg-options, as train/test
    shape = None
    if args.shape is not None:
        shape = args.shape * 2 if len(args.shape) == 1 else args.shape
    result = model_complexity(cfg, shape)
    h, w = result['shape']
    print(f'Config: {args.config}')
    print(f'Input shape (H, W): ({h}, {w}); after padding: {result["input_shape"]}')
    print(f'Params: {result["params"] / 1e6:.2f} M ({result["params"]})')
    print(f'FLOPs: {result["flops"] / 1e9:.2f} G ({result["flops"]})')


if __name__ == '__main__':
    main()
