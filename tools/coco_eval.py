"""COCO AP/AR of saved result files, without a model.

    python tools/coco_eval.py --ann ANN.json [--bbox RES.bbox.json] [--segm RES.segm.json]
                              [--backend faster_coco_eval|pycocotools] [--jobs N]
                              [--out SUMMARY.json] [--quiet]

The result files are what ``tools/test.py CONFIG CKPT --cfg-options
test_evaluator.outfile_prefix=PREFIX`` writes (``PREFIX.bbox.json``, ``PREFIX.segm.json``). The
default backend, faster-coco-eval, gives pycocotools' 12 numbers several times faster; on Linux
with 2 CPUs, bbox and segm are evaluated side by side in two processes (--jobs 1: one after the
other); see convnext_dense/evaluation/coco_eval.py and docs/evaluation.md. Each phase (loading,
evaluating, per iou type) is reported on stderr with its wall time; the numbers go to stdout.
"""
import argparse
import importlib
import importlib.util
import sys
import time

# Packages whose __init__.py the evaluation does not need: importing convnext_dense registers the
# models, which imports torch, mmengine and mmdet (seconds); its fileio package pulls in torch.
_BARE_PACKAGES = ('convnext_dense', 'convnext_dense.fileio', 'convnext_dense.evaluation')


def import_coco_eval():
    """``convnext_dense.evaluation.coco_eval`` with the packages above it left uninitialised,
    so that the tool starts in a fraction of a second."""
    if 'convnext_dense' not in sys.modules:
        for name in _BARE_PACKAGES:
            spec = importlib.util.find_spec(name)
            sys.modules[name] = importlib.util.module_from_spec(spec)  # __path__ only
    return importlib.import_module('convnext_dense.evaluation.coco_eval')


def parse_args(coco_eval, argv=None):
    parser = argparse.ArgumentParser(description='Evaluate COCO result files')
    parser.add_argument('--ann', required=True, help='COCO annotation file (ground truth)')
    parser.add_argument('--bbox', help='bbox results file (JSON list)')
    parser.add_argument('--segm', help='segm results file (JSON list, RLE segmentations)')
    parser.add_argument('--backend', choices=coco_eval.BACKENDS,
                        default=coco_eval.DEFAULT_BACKEND,
                        help='faster_coco_eval (C++, default) or pycocotools; the same numbers')
    parser.add_argument('--jobs', type=int, default=None,
                        help='processes: 2 evaluates bbox and segm side by side, 1 one after '
                        'the other (default: 2 on Linux with 2 CPUs available); the same numbers')
    parser.add_argument('--out', help='write the numbers to this JSON file')
    parser.add_argument('--quiet', action='store_true',
                        help='no progress lines on stderr')
    args = parser.parse_args(argv)
    if not args.bbox and not args.segm:
        parser.error('give --bbox and/or --segm')
    if args.jobs is not None and args.jobs < 1:
        parser.error(f'--jobs {args.jobs}: use 1 or more processes')
    return args


def progress(message: str) -> None:
    print(f'[{time.strftime("%H:%M:%S")}] {message}', file=sys.stderr, flush=True)


def main(argv=None):
    coco_eval = import_coco_eval()
    args = parse_args(coco_eval, argv)
    files = {iou_type: path for iou_type, path in (('bbox', args.bbox), ('segm', args.segm))
             if path}
    try:
        summary = coco_eval.evaluate_files(args.ann, files, backend=args.backend,
                                           log=None if args.quiet else progress, jobs=args.jobs)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'error: {error}')
    print(coco_eval.format_summary(summary))
    if args.out:
        coco_eval.save_summary(summary, args.out)
        print(f'summary written to {args.out}')


if __name__ == '__main__':
    main()
