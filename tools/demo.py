"""Draw a model's prediction on one image: instance masks and boxes (mmdet configs) or the
segmentation overlay (mmseg configs).

    python tools/demo.py IMAGE CONFIG CHECKPOINT --out OUT.png [--device cpu] [--score-thr 0.3]
"""
import argparse

import convnext_dense  # noqa: F401  (registers the plugin, safe checkpoint loading)
from convnext_dense.apis import draw_prediction
from convnext_dense.engine.launch import DictAction


def parse_args():
    parser = argparse.ArgumentParser(description='Draw the prediction on one image')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='output picture (PNG or JPG)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda:N')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection score threshold')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys')
    return parser.parse_args()


def main():
    args = parse_args()
    image = draw_prediction(args.image, args.config, args.checkpoint, args.out,
                            device=args.device, score_thr=args.score_thr,
                            cfg_options=args.cfg_options)
    print(f'wrote {args.out} ({image.shape[1]}x{image.shape[0]})')


if __name__ == '__main__':
    main()
