"""Draw a training's curves: loss, learning rate and validation metrics against the iteration,
from the scalars mmengine logged in its work dir (``<timestamp>/vis_data/scalars.json``).

    python tools/analysis/plot_curves.py WORK_DIR [--keys loss lr mIoU ...] [--out PNG]
                                         [--title TEXT]

Default keys: loss, lr and each validation metric (COCO's AP at IoU 0.5 / 0.75 and per object
size only when named); default picture: WORK_DIR/curves.png. See
:mod:`convnext_dense.analysis.curves`.
"""
import argparse
import sys

from convnext_dense.analysis.curves import plot_curves


def parse_args():
    parser = argparse.ArgumentParser(description='Plot the training curves of a work dir')
    parser.add_argument('work_dir', help="the training's --work-dir (or one run's "
                        '<timestamp> folder, or a scalars.json)')
    parser.add_argument('--keys', nargs='+', metavar='KEY',
                        help='series to draw (default: loss, lr and the validation metrics)')
    parser.add_argument('--out', help='output PNG (default: WORK_DIR/curves.png)')
    parser.add_argument('--title', help='title over the panels (default: the work dir name)')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        picture = plot_curves(args.work_dir, args.keys, args.out, args.title)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'error: {error}')
    width, height = picture.size
    keys = ', '.join(panel.key for panel in picture.panels)
    print(f'wrote {picture.path} ({width}x{height}: {keys})')


if __name__ == '__main__':
    main()
