"""Export an mmseg UperNet-ConvNeXt (V1 or V2, any size) to a Hugging Face transformers folder
that ``UperNetForSemanticSegmentation.from_pretrained(OUT_DIR)`` loads.

    python tools/deployment/export_hf.py CONFIG CHECKPOINT OUT_DIR

Writes ``config.json`` (UperNetConfig over ConvNextConfig / ConvNextV2Config, with the class
names of the checkpoint's ``meta.dataset_meta`` or of the config's dataset),
``model.safetensors`` and ``preprocessor_config.json`` (the config's mean and std). Needs
transformers 4.x.
"""
import argparse
import sys

import convnext_dense  # noqa: F401  (registers the backbone, safe checkpoint loading)
from convnext_dense.deployment.hf_upernet import export_hf
from convnext_dense.fileio import UnsafeCheckpointError


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='mmseg UperNet-ConvNeXt config file')
    parser.add_argument('checkpoint', help='whole-model checkpoint of that config')
    parser.add_argument('out_dir', help='folder to write (created; same-named files replaced)')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        summary = export_hf(args.config, args.checkpoint, args.out_dir)
    except (FileNotFoundError, ImportError, UnsafeCheckpointError, ValueError) as error:
        sys.exit(f'error: {error}')
    print(f'wrote {args.out_dir} ({summary["backbone"]} backbone, {len(summary["classes"])} '
          f'classes): {", ".join(summary["files"])}')
    for note in summary['notes']:
        print(f'note: {note}')


if __name__ == '__main__':
    main()
