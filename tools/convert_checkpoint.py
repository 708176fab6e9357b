"""Convert a ConvNeXt checkpoint of any published layout (official, DINOv3 / EUPE, open_clip,
timm, mmpretrain, Hugging Face ConvNeXt and DINOv3ConvNext files or save_pretrained folders,
fine-tuned mmdet 2.x / mmseg 0.x) to this project's layout, or to another layout.

    python tools/convert_checkpoint.py SRC DST [--to official|timm|...] [--prefix P]
        [--final-norm auto|stage4|drop]
"""
import argparse

from convnext_dense.checkpoint import FINAL_NORM_CHOICES, LAYOUTS, convert_checkpoint_file


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='checkpoint to read (path, http(s) URL or Hugging Face '
                        'save_pretrained folder)')
    parser.add_argument('dst', help='file to write')
    parser.add_argument('--to', default='official', choices=LAYOUTS,
                        help='layout of the written keys (default: official, the project\'s)')
    parser.add_argument('--prefix', default=None,
                        help="prefix of the backbone's keys in SRC (default: detected)")
    parser.add_argument('--final-norm', default='auto', choices=FINAL_NORM_CHOICES,
                        help='the final norm of SRC: as its layout says (auto: DINOv3/EUPE '
                        'patch-token norms become the stage-4 output norm norm3, classifier '
                        'norms are dropped), or stage4 / drop regardless')
    return parser.parse_args()


def main():
    args = parse_args()
    report = convert_checkpoint_file(args.src, args.dst, layout=args.to, prefix=args.prefix,
                                     final_norm=args.final_norm)
    final = {'stage4': '; final norm loaded as the stage-4 output norm norm3',
             'classifier': '; final norm dropped with the classifier'}.get(report.final_norm, '')
    dropped = ''.join(f'; dropped {len(keys)} tensors: {reason}'
                      for reason, keys in report.dropped.items())
    print(f'{args.src}: {report.layout} layout'
          f'{f", backbone prefix {report.prefix!r}" if report.prefix else ""}; dropped '
          f'{len(report.dropped_classifier)} classifier and ignored {len(report.ignored)} '
          f'non-backbone tensors{final}{dropped}; wrote {args.dst} ({args.to} layout)')


if __name__ == '__main__':
    main()
