"""ConvNeXt checkpoints: the published key layouts (:mod:`.layouts`), loading a backbone from any
of them (:mod:`.loading`), the licence notices of DINOv3 and EUPE weights (:mod:`.families`),
and fitting whole detector/segmentor checkpoints (:mod:`.model_fit`)."""
from .families import LICENCES, licence_notice, weight_families
from .layouts import (
    FINAL_NORM_CHOICES,
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
    read_state_dict,
    read_weights_folder,
    shape_mismatch,
)
from .model_fit import fit_model_state_dict, load_model_checkpoint

__all__ = [
    'FINAL_NORM_CHOICES', 'LAYOUTS', 'LAYOUT_RECORDS', 'LICENCES', 'ConversionReport', 'Layout',
    'Rule', 'arch_of', 'convert_checkpoint_file', 'convert_state_dict', 'detect_layout',
    'export_state_dict', 'fit_model_state_dict', 'get_layout', 'licence_notice',
    'load_model_checkpoint', 'load_pretrained', 'load_state_dict_into', 'read_state_dict',
    'read_weights_folder', 'shape_mismatch', 'unwrap_checkpoint', 'weight_families'
]
