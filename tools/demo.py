"""Draw a model's prediction on one image beside the input and, when given, the ground truth:
instance masks and boxes (mmdet configs) or the segmentation overlay (mmseg configs), small
images scaled up, with titles and a class legend.

    python tools/demo.py IMAGE CONFIG CHECKPOINT --out OUT.png [--gt GT [--gt-id ID]]
                         [--device cpu] [--score-thr 0.3]

--gt: detection, a COCO annotation file holding IMAGE (found by file name, or by --gt-id);
segmentation, IMAGE's label map (a single-channel PNG, as ADE20K stores them).
"""
import argparse

from mmengine.config import DictAction

import convnext_dense  # noqa: F401  (registers the plugin, safe checkpoint loading)
from convnext_dense.apis import draw_prediction


def parse_args():
    parser = argparse.ArgumentParser(description='Draw the prediction on one image')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='output picture (PNG or JPG)')
    parser.add_argument('--gt', help='ground truth: a COCO annotation file (detection) or the '
                        "image's label map PNG (segmentation)")
    parser.add_argument('--gt-id', type=int,
                        help="the image's id in the COCO --gt file (default: found by name)")
    parser.add_argument('--device', default='cpu', help='cpu or cuda:N')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection score threshold')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys')
    args = parser.parse_args()
    if args.gt_id is not None and args.gt is None:
        parser.error('--gt-id needs --gt')
    return args


def main():
    args = parse_args()
    picture = draw_prediction(args.image, args.config, args.checkpoint, args.out,
                              device=args.device, score_thr=args.score_thr,
                              cfg_options=args.cfg_options, gt=args.gt, gt_id=args.gt_id)
    height, width = picture.image.shape[:2]
    titles = ', '.join(title for title, _ in picture.panels)
    print(f'wrote {args.out} ({width}x{height}: {titles})')


if __name__ == '__main__':
    main()
