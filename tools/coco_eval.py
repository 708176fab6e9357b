"""COCO AP/AR of saved result files, without a model.

    python tools/coco_eval.py --ann ANN.json [--bbox RES.bbox.json] [--segm RES.segm.json]
                              [--out SUMMARY.json]

The result files are what ``tools/test.py CONFIG CKPT --cfg-options
test_evaluator.outfile_prefix=PREFIX`` writes (``PREFIX.bbox.json``, ``PREFIX.segm.json``); see
convnext_dense/evaluation/coco_eval.py.
"""
import argparse
import sys

from convnext_dense.evaluation import evaluate_files, format_summary, save_summary


def parse_args():
    parser = argparse.ArgumentParser(description='Evaluate COCO result files')
    parser.add_argument('--ann', required=True, help='COCO annotation file (ground truth)')
    parser.add_argument('--bbox', help='bbox results file (JSON list)')
    parser.add_argument('--segm', help='segm results file (JSON list, RLE segmentations)')
    parser.add_argument('--out', help='write the numbers to this JSON file')
    args = parser.parse_args()
    if not args.bbox and not args.segm:
        parser.error('give --bbox and/or --segm')
    return args


def main():
    args = parse_args()
    files = {iou_type: path for iou_type, path in (('bbox', args.bbox), ('segm', args.segm))
             if path}
    try:
        summary = evaluate_files(args.ann, files)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'error: {error}')
    print(format_summary(summary))
    if args.out:
        save_summary(summary, args.out)
        print(f'summary written to {args.out}')


if __name__ == '__main__':
    main()
