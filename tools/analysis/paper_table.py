"""Print the Markdown table of the configs and the paper's numbers, from configs/metafile.yml
(the table in docs/configs.md is this output).

    python tools/analysis/paper_table.py [--metafile configs/metafile.yml]
"""
import argparse

from convnext_dense.analysis.metafile import METAFILE, read_metafile, render_table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--metafile', default=str(METAFILE))
    args = parser.parse_args()
    print(render_table(read_metafile(args.metafile)))


if __name__ == '__main__':
    main()
