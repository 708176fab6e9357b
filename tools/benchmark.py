"""Time this project's ConvNeXt path against timm, mmpretrain and the upstream mmdet/mmseg route
on identical synthetic inputs, in one run (see convnext_dense/benchmarks/speed.py).

    python tools/benchmark.py [--device cuda] [--sizes gpu|cpu] [--dtype bf16|fp16|fp32]
                              [--parts backbone models ops] [--iters 30] [--warmup 10]
                              [--compile-timm] [--out results.json]

On CUDA it defaults to the full sizes (2x3x800x1344 backbone training, Mask R-CNN 2 images
800x1344 with 12 instances, UperNet 16 crops 512x512, ...); on CPU to small ones, to check that
everything runs.
"""
import argparse
import json
import platform

import torch

import convnext_dense  # noqa: F401
from convnext_dense.benchmarks import speed as benchmark

DTYPES = dict(bf16=torch.bfloat16, fp16=torch.float16, fp32=torch.float32)


def parse_args():
    parser = argparse.ArgumentParser(description='ConvNeXt speed, side by side')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--sizes', choices=['gpu', 'cpu'], default=None,
                        help='input sizes (default: gpu on CUDA, cpu otherwise)')
    parser.add_argument('--dtype', choices=list(DTYPES), default=None,
                        help='backbone autocast dtype (default: bf16 on CUDA, fp32 on CPU)')
    parser.add_argument('--amp', action='store_true',
                        help="full models: use the configs' fp16 AMP (CUDA only)")
    parser.add_argument('--parts', nargs='+', default=['backbone', 'models'],
                        choices=['backbone', 'models', 'ops'],
                        help='ops: mmcv\'s compiled RoIAlign and NMS against torchvision\'s')
    parser.add_argument('--models', nargs='+', default=['mask_rcnn', 'cascade', 'upernet'],
                        choices=['mask_rcnn', 'cascade', 'upernet'])
    parser.add_argument('--iters', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--compile-timm', action='store_true',
                        help='also time torch.compile(timm convnext_tiny)')
    parser.add_argument('--out', help='write the results as JSON')
    return parser.parse_args()


def main():
    args = parse_args()
    device = torch.device(args.device)
    sizes = benchmark.GPU_SIZES if (args.sizes or ('gpu' if device.type == 'cuda' else 'cpu')) \
        == 'gpu' else benchmark.CPU_SIZES
    dtype = DTYPES[args.dtype or ('bf16' if device.type == 'cuda' else 'fp32')]
    torch.backends.cudnn.benchmark = False  # detection: RoI shapes change every iteration
    results = []
    if 'backbone' in args.parts:
        results += benchmark.bench_backbones(device, sizes, dtype, args.warmup, args.iters,
                                             args.compile_timm)
    if 'models' in args.parts:
        results += benchmark.bench_models(device, sizes, args.amp, args.warmup, args.iters,
                                          tuple(args.models))
    if 'ops' in args.parts:
        results += benchmark.bench_ops(device, sizes, args.warmup, args.iters)
    benchmark.add_ratios(results)
    hardware = torch.cuda.get_device_name(device) if device.type == 'cuda' else \
        f'{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads'
    print(f'# {hardware}, torch {torch.__version__}, backbone dtype {dtype}, '
          f'{args.iters} timed iterations after {args.warmup} warm-up')
    print(benchmark.markdown_table(results))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(hardware=hardware, torch=torch.__version__, dtype=str(dtype),
                           results=[dict(case=r.case, contender=r.contender, median_ms=r.median,
                                         spread_ms=r.spread, peak_mem_gib=r.peak_mem_gib,
                                         ratios=r.ratios) for r in results]), f, indent=2)


if __name__ == '__main__':
    main()
