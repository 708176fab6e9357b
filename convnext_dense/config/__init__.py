"""Reading configs and checking them before anything is built: :mod:`.loading` (the file, its
``_base_`` chain, ``--cfg-options``, ``roi_ops`` and the task), :mod:`.data_checks` (data roots,
image folders, COCO annotation files) and :mod:`.rewrite` (the edits the tools make)."""
from .data_checks import LOADERS, check_datasets
from .loading import SCOPES, check_cfg_options, load_config
from .rewrite import add_custom_hook, replace_types

__all__ = ['LOADERS', 'SCOPES', 'add_custom_hook', 'check_cfg_options', 'check_datasets',
           'load_config', 'replace_types']
