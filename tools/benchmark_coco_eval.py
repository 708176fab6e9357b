"""Time COCO box + mask evaluation of result files: pycocotools' own COCOeval against
tools/coco_eval.py with --backend pycocotools and with faster-coco-eval (the default) in one and
in two processes, each as a whole process (wall time, and CPU time of it and its children), on a
synthetic set (see convnext_dense/benchmarks/coco_eval_speed.py).

    python tools/benchmark_coco_eval.py [--num-images 2000] [--detections 100] [--repeats 3]
                                        [--seed 0] [--keep DIR] [--out results.json]

It prints a markdown table (the one in docs/evaluation.md) and exits with 1 if the commands do
not give the same 24 numbers (within eps x the number of values each averages, about 2e-12; see
convnext_dense/evaluation/coco_eval.py).
"""
import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from convnext_dense.benchmarks import coco_eval_speed

TOOL = Path(__file__).resolve().parent / 'coco_eval.py'  # the command line it times


def parse_args():
    parser = argparse.ArgumentParser(description='COCO evaluation speed, side by side')
    parser.add_argument('--num-images', type=int, default=2000)
    parser.add_argument('--objects', type=float, default=7.0,
                        help='mean number of objects per image')
    parser.add_argument('--detections', type=int, default=100, help='detections per image')
    parser.add_argument('--repeats', type=int, default=3, help='runs of each command, in turns')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--keep', help='write the set and outputs here (default: a temporary '
                        'folder, removed afterwards)')
    parser.add_argument('--out', help='also write the timings as JSON')
    return parser.parse_args()


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        result = coco_eval_speed.run_benchmark(
            args.keep or scratch, TOOL, num_images=args.num_images, repeats=args.repeats,
            seed=args.seed, objects_per_image=args.objects,
            detections_per_image=args.detections)
    print(f'\n{result.num_images} images, {result.num_annotations} objects, '
          f'{result.num_detections} detections (bbox + segm); {result.environment}\n')
    print(coco_eval_speed.format_table(result))
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(asdict(result), f, indent=2)
    reference = result.contenders[0].stats
    worst = max(coco_eval_speed.max_difference(c.stats, reference)
                for c in result.contenders[1:])
    if worst > coco_eval_speed.agreement_bound(result.num_categories):
        sys.exit(f'error: the numbers differ from pycocotools\' by up to {worst:.3g}')


if __name__ == '__main__':
    main()
