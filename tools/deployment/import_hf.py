"""Turn a Hugging Face transformers UperNet-ConvNeXt folder (``save_pretrained`` output, e.g. a
downloaded ``openmmlab/upernet-convnext-*``) into a checkpoint that ``tools/test.py`` evaluates.

    python tools/deployment/import_hf.py HF_DIR OUT.pth [--config CONFIG]

``--config``: the mmseg config it will be evaluated with (``configs/upernet/...``); the folder is
checked against its model, field by field and tensor by tensor, before anything is written.
Needs transformers 4.x.
"""
import argparse
import sys

import convnext_dense  # noqa: F401  (registers the backbone, safe checkpoint loading)
from convnext_dense.deployment.hf_upernet import import_hf
from convnext_dense.fileio import UnsafeCheckpointError


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('hf_dir', help='folder with config.json and model.safetensors '
                        '(or pytorch_model.bin)')
    parser.add_argument('out', help='checkpoint file to write')
    parser.add_argument('--config', help='mmseg config to check the model against')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        summary = import_hf(args.hf_dir, args.out, config=args.config)
    except (FileNotFoundError, ImportError, UnsafeCheckpointError, ValueError) as error:
        sys.exit(f'error: {error}')
    checked = f', checked against {args.config}' if args.config else ''
    print(f'wrote {args.out} ({summary["backbone"]} backbone, {len(summary["classes"])} '
          f'classes{checked})')
    for note in summary['notes']:
        print(f'note: {note}')


if __name__ == '__main__':
    main()
