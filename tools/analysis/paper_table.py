"""Print the Markdown table of the configs and the paper's numbers, from configs/metafile.yml
(the table in docs/configs.md is this output).

    python tools/analysis/paper_table.py [--metafile configs/metafile.yml]
"""
import argparse
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = (('params_m', 'params (M)'), ('flops_g', 'GFLOPs'), ('box_ap', 'box AP'),
           ('mask_ap', 'mask AP'), ('miou', 'mIoU'), ('miou_ms', 'mIoU ms+flip'))


def render(models: list[dict]) -> str:
    by_config = {m['config']: m for m in models}
    header = ['config', 'arch'] + [title for _, title in COLUMNS] + [
        'lr', 'decay', 'drop path']
    rows = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for model in models:
        paper = dict(model['paper'])
        same = model.get('same_model_as')
        if same:  # the same network: its params and FLOPs
            paper = {**{k: by_config[same]['paper'][k] for k in ('params_m', 'flops_g')},
                     **paper}
        recipe = model['recipe']
        cells = [f'`{model["config"]}`', model['arch']]
        cells += ['-' if paper.get(key) is None else str(paper[key]) for key, _ in COLUMNS]
        cells += [f'{recipe["lr"]:.0e}'.replace('e-0', 'e-'),
                  f'{recipe["decay_type"]} {recipe["decay_rate"]} / {recipe["num_layers"]}',
                  str(recipe['drop_path_rate'])]
        rows.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--metafile', default=str(ROOT / 'configs/metafile.yml'))
    args = parser.parse_args()
    with open(args.metafile, encoding='utf-8') as f:
        print(render(yaml.safe_load(f)['Models']))


if __name__ == '__main__':
    main()
