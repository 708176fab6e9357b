"""Write the synthetic toy datasets the ``*_toy.py`` configs train on.

    python tools/make_toy_data.py [--out data] [--num-train 64] [--num-val 16] [--size 128]
                                  [--seed 0] [--overwrite]

Writes ``OUT/toy_coco`` (COCO instance segmentation of 5 shapes) and ``OUT/toy_ade`` (semantic
segmentation in ADE20K's folder layout: the background and the 5 shapes, every pixel labelled);
see convnext_dense/datasets/toy.py.
"""
import argparse
import sys
import time

from convnext_dense.datasets import make_toy_data


def parse_args():
    parser = argparse.ArgumentParser(description='Make the toy COCO and ADE20K-style datasets')
    parser.add_argument('--out', default='data',
                        help='folder that receives toy_coco/ and toy_ade/ (default: data)')
    parser.add_argument('--num-train', type=int, default=64, help='training images per dataset')
    parser.add_argument('--num-val', type=int, default=16, help='validation images per dataset')
    parser.add_argument('--size', type=int, default=128, help='image width and height')
    parser.add_argument('--seed', type=int, default=0, help='random seed (same seed, same files)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace existing toy_coco/ and toy_ade/ folders')
    return parser.parse_args()


def main():
    args = parse_args()
    start = time.perf_counter()
    try:
        summary = make_toy_data(args.out, num_train=args.num_train, num_val=args.num_val,
                                size=args.size, seed=args.seed, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as error:
        sys.exit(f'error: {error}')
    seconds = time.perf_counter() - start
    print(f"{summary['coco']} classes: {', '.join(summary['coco_classes'])}")
    print(f"{summary['ade']} classes: {', '.join(summary['ade_classes'])} (every pixel)")
    for split in ('train', 'val'):
        info = summary[f'coco_{split}']
        print(f"{summary['coco']}: {split}: {info['images']} images, {info['annotations']} "
              f"instances ({info['occluded']} partly occluded; masks: {info['polygon']} "
              f"polygon, {info['rle']} RLE, {info['compressed_rle']} compressed RLE)")
    for split in ('training', 'validation'):
        print(f"{summary['ade']}: {split}: {summary[f'ade_{split}']['images']} images with "
              'label maps')
    print(f'wrote in {seconds:.1f} s')


if __name__ == '__main__':
    main()
