"""Check an installation end to end: the paper's Mask R-CNN-T, Cascade Mask R-CNN-T, UperNet-T
and UperNet V2-B configs trained on synthetic data through torchrun on every visible GPU (NCCL),
plain and with --bf16 --channels-last --compile, resumed, and evaluated with tools/test.py; see
convnext_dense/benchmarks/install_check.py.

    python tools/check_install.py [--gpus N] [--models mask_rcnn cascade upernet upernet_v2_b]
                                  [--device cuda|cpu] [--sizes full|toy] [--work-dir DIR]
                                  [--timeout S] [--cfg-options k=v ...] [--out results.json]
                                  [--write-docs [FILE]]

Without a GPU (or with --device cpu) it runs the same steps at toy sizes on 2 gloo processes.
Prints a table (model, path, GPUs, s/iter, images/s, peak memory, result) and exits with 1 naming
the first failure.
"""
import argparse
import json
import sys
from pathlib import Path

import torch
from mmengine.config import DictAction

import convnext_dense  # noqa: F401  (registers the plugin)
from convnext_dense.benchmarks import install_check, speed

TOOLS = Path(__file__).resolve().parent  # the dist_train.sh / dist_test.sh the check runs
DOC = TOOLS.parent / 'docs/performance.md'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Check the installation end to end')
    parser.add_argument('--gpus', type=int, default=None,
                        help='processes: GPUs to train on (default: every visible GPU; '
                        'with --device cpu, 2 CPU processes)')
    parser.add_argument('--models', nargs='+', default=list(install_check.CASES),
                        choices=list(install_check.CASES))
    parser.add_argument('--device', choices=['cuda', 'cpu'], default=None,
                        help='default: cuda where a GPU is visible, cpu otherwise')
    parser.add_argument('--sizes', choices=list(install_check.PLANS), default=None,
                        help="full: the recipes' sizes (default on cuda); toy: tiny models and "
                        'images (default on cpu)')
    parser.add_argument('--work-dir', default=None,
                        help='keep configs, logs and checkpoints here (default: a temporary '
                        'folder, removed when every step passed)')
    parser.add_argument('--timeout', type=float, default=900.,
                        help='seconds one step may take before it is killed (default 900)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override keys of every derived config (after the check\'s own)')
    parser.add_argument('--out', help='also write the results as JSON')
    parser.add_argument('--write-docs', nargs='?', const=str(DOC), default=None, metavar='FILE',
                        help=f'write the table into FILE (default {DOC}; a CUDA run only)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    sizes = args.sizes or ('full' if device == 'cuda' else 'toy')
    processes = args.gpus or (torch.cuda.device_count() if device == 'cuda' else 2)
    try:
        if args.write_docs and device != 'cuda':
            raise ValueError('--write-docs: the docs hold a GPU run\'s table; this runs on '
                             f'--device {device}')
        if processes < 1:
            raise ValueError(f'--gpus {processes}: use 1 or more')
        check, report = install_check.run(args.models, install_check.PLANS[sizes], processes,
                                          device, args.work_dir, args.timeout,
                                          install_check.tools_launcher(TOOLS), args.cfg_options)
    except (ValueError, KeyError) as error:  # arguments, the environment, --cfg-options
        print(f'check_install.py: {error}', file=sys.stderr)
        return 2
    print(report)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(install_check.to_json(check), f, indent=2)
    if args.write_docs:
        speed.write_section(Path(args.write_docs), install_check.BEGIN, install_check.END,
                            report)
        print(f'wrote the table into {args.write_docs}')
    failure = check.first_failure
    if failure is not None:
        print(f'check_install.py: FAILED: {failure.case.label}, {failure.path}: '
              f'{failure.failure}', file=sys.stderr)
        return 1
    print(f'check_install.py: all {len(check.results)} steps passed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
