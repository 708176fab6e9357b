"""ConvNeXt checkpoints: the published key layouts (:mod:`.layouts`), loading a backbone from any
of them (:mod:`.loading`), and fitting whole detector/segmentor checkpoints (:mod:`.model_fit`)."""
from .layouts import (
    LAYOUT_RECORDS,
    LAYOUTS,
    ConversionReport,
    Layout,
    Rule,
    arch_of,
    convert_state_dict,
    detect_layout,
    export_state_dict,
    get_layout,
    unwrap_checkpoint,
)
from .loading import (
    convert_checkpoint_file,
    load_pretrained,
    load_state_dict_into,
    shape_mismatch,
)
from .model_fit import fit_model_state_dict, load_model_checkpoint

__all__ = [
    'LAYOUTS', 'LAYOUT_RECORDS', 'ConversionReport', 'Layout', 'Rule', 'arch_of',
    'convert_checkpoint_file', 'convert_state_dict', 'detect_layout', 'export_state_dict',
    'fit_model_state_dict', 'get_layout', 'load_model_checkpoint', 'load_pretrained',
    'load_state_dict_into', 'shape_mismatch', 'unwrap_checkpoint'
]
