"""configs/metafile.yml: the one source of the papers' numbers and recipes of every config.

Read from the installed package (``convnext_dense/.mim/configs/metafile.yml``, in a checkout the
link to ``configs/``); its ``config`` keys are paths under that folder, so that
``convnext_dense::`` + a key names the config (:mod:`convnext_dense.compat.config_package`).
"""
from __future__ import annotations

from pathlib import Path

import yaml

from ..compat.config_package import configs_dir

METAFILE = configs_dir() / 'metafile.yml'
# What a config that names another in ``same_model_as`` (the same network, another recipe or
# evaluation) takes from it when it does not give its own.
SAME_MODEL_KEYS = ('params_m', 'flops_g')


def read_metafile(path: str | Path = METAFILE) -> dict[str, dict]:
    """The metafile's models by config path, with ``same_model_as`` resolved."""
    with open(path, encoding='utf-8') as f:
        models = {m['config']: m for m in yaml.safe_load(f)['Models']}
    for config, model in models.items():
        same = model.get('same_model_as')
        if same is None:
            continue
        if same not in models:
            raise ValueError(f'{path}: {config} has same_model_as: {same}, which is not a '
                             'config of the metafile')
        for key in SAME_MODEL_KEYS:
            if model['paper'].get(key) is None:
                model['paper'][key] = models[same]['paper'].get(key)
    return models


COLUMNS = (('params_m', 'params (M)'), ('flops_g', 'GFLOPs'), ('box_ap', 'box AP'),
           ('mask_ap', 'mask AP'), ('miou', 'mIoU'), ('miou_ms', 'mIoU ms+flip'))


def render_table(models: dict[str, dict]) -> str:
    """The Markdown table of docs/configs.md, one row per config."""
    header = ['config', 'arch'] + [title for _, title in COLUMNS] + [
        'lr', 'decay', 'drop path']
    rows = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for model in models.values():
        paper = model['paper']
        recipe = model['recipe']
        # no published numbers (DINOv3 / CLIP configs): measured params and FLOPs, in italics
        measured = model.get('measured', {})
        cells = [f'`{model["config"]}`', model['arch']]
        cells += [str(paper[key]) if paper.get(key) is not None else
                  f'_{measured[key]}_' if measured.get(key) is not None else '-'
                  for key, _ in COLUMNS]
        cells += [f'{recipe["lr"]:.0e}'.replace('e-0', 'e-'),
                  f'{recipe["decay_type"]} {recipe["decay_rate"]} / {recipe["num_layers"]}',
                  str(recipe['drop_path_rate'])]
        rows.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(rows)
