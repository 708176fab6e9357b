"""Convert a ConvNeXt checkpoint of any published layout (official, timm, mmpretrain, Hugging
Face, fine-tuned mmdet 2.x / mmseg 0.x) to this project's layout, or to another layout.

    python tools/convert_checkpoint.py SRC DST [--to official|timm|mmpretrain|hf] [--prefix P]
"""
import argparse

from convnext_dense.checkpoint import LAYOUTS, convert_checkpoint_file


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='checkpoint to read (path or http(s) URL)')
    parser.add_argument('dst', help='file to write')
    parser.add_argument('--to', default='official', choices=LAYOUTS,
                        help='layout of the written keys (default: official, the project\'s)')
    parser.add_argument('--prefix', default=None,
                        help="prefix of the backbone's keys in SRC (default: detected)")
    return parser.parse_args()


def main():
    args = parse_args()
    report = convert_checkpoint_file(args.src, args.dst, layout=args.to, prefix=args.prefix)
    print(f'{args.src}: {report.layout} layout'
          f'{f", backbone prefix {report.prefix!r}" if report.prefix else ""}; dropped '
          f'{len(report.dropped_classifier)} classifier and ignored {len(report.ignored)} '
          f'non-backbone tensors; wrote {args.dst} ({args.to} layout)')


if __name__ == '__main__':
    main()
