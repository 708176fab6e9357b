"""Time this project's ConvNeXt path against timm and the upstream mmdet/mmseg route on identical
synthetic inputs, in one process (see convnext_dense/benchmarks/speed.py).

    python tools/benchmark.py --suite gpu      # one CUDA GPU: every goal's case, writes the
                                               # table into docs/performance.md
    python tools/benchmark.py --suite cpu      # the same code at small sizes (a smoke test)
    python tools/benchmark.py [--suite S] [--parts backbone models ops]
                              [--models mask_rcnn cascade upernet] [--out results.json]
                              [--no-docs]

The gpu suite: backbone ConvNeXt-T fwd+bwd and forward 2x3x800x1344 bf16 (ours compiled, eager,
with fused kernels; timm eager and compiled), Mask R-CNN-T / Cascade-T train step (2 images
800x1344) and inference (800x1333), UperNet-T train step (16 crops 512x512) and slide inference
(512x2048): ours with --bf16 --channels-last --compile, ours plain, the upstream route.
"""
import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

import convnext_dense  # noqa: F401  (registers the plugin)
from convnext_dense.benchmarks import speed

MODELS = dict(mask_rcnn='Mask R-CNN-T', cascade='Cascade Mask R-CNN-T', upernet='UperNet-T')
DOC = Path(__file__).resolve().parents[1] / 'docs/performance.md'


def parse_args():
    parser = argparse.ArgumentParser(description='ConvNeXt speed, side by side')
    parser.add_argument('--suite', choices=sorted(speed.SUITES), default=None,
                        help='sizes and settings (default: gpu on CUDA, cpu otherwise)')
    parser.add_argument('--device', default=None,
                        help='default: cuda for --suite gpu, cpu for --suite cpu')
    parser.add_argument('--parts', nargs='+', default=['backbone', 'models'],
                        choices=speed.PARTS,
                        help="ops: mmcv's compiled RoIAlign and NMS against torchvision's")
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    parser.add_argument('--out', help='also write the results as JSON')
    parser.add_argument('--no-docs', action='store_true',
                        help=f'--suite gpu: do not write the table into {DOC.name}')
    return parser.parse_args()


def main():
    args = parse_args()
    suite = args.suite or ('gpu' if torch.cuda.is_available() else 'cpu')
    device = torch.device(args.device or ('cuda' if suite == 'gpu' else 'cpu'))
    try:
        result = speed.run_suite(suite, device, tuple(args.parts),
                                 tuple(MODELS[m] for m in args.models))
    except ValueError as error:
        sys.exit(f'benchmark.py: {error}')
    print(speed.to_markdown(result))
    if suite == 'gpu' and not args.no_docs:
        speed.write_into(DOC, result)
        print(f'wrote the table into {DOC}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(suite=result.suite, environment=result.environment,
                           seconds=result.seconds, skipped=result.skipped,
                           kernel_tops=result.kernel_tops,
                           results=[dict(asdict(t), median_ms=t.median, spread_ms=t.spread)
                                    for t in result.timings]), f, indent=2)


if __name__ == '__main__':
    main()
