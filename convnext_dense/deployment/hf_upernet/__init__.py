"""UperNet with a ConvNeXt backbone to and from Hugging Face transformers.

transformers' ``UperNetForSemanticSegmentation`` over ``ConvNextBackbone`` (V1) or
``ConvNextV2Backbone`` (V2) is the model of mmseg's ``EncoderDecoder`` with this project's
``ConvNeXt``, mmseg's ``UPerHead`` (Xiao et al., "Unified Perceptual Parsing for Scene
Understanding", ECCV 2018; or this project's ``ChunkedLossUPerHead``, the same inference) and an
``FCNHead`` auxiliary head on stage 2, the ADE20K setup of the
ConvNeXt papers (Liu et al. 2022, Appendix A.4; Woo et al. 2023, Appendix A.4); the hub's
``openmmlab/upernet-convnext-*`` models are the paper's mmseg 0.x checkpoints renamed.
transformers fixes what mmseg leaves to the config (LayerNorm eps 1e-6, BatchNorm eps 1e-5,
ReLU, ``align_corners=False``, the auxiliary head on the third feature map with 3x3
convolutions), so :func:`check_hf_compatible` refuses a model that transformers would compute
differently, naming the config key.

One module per job:

* :mod:`.renaming`: :func:`upernet_to_hf_state_dict` / :func:`hf_to_upernet_state_dict`, the
  pure renamings. The backbone goes through the ``hf`` layout of
  :mod:`convnext_dense.checkpoint.layouts`; in the heads mmcv's ``ConvModule.bn`` is
  transformers' ``batch_norm`` and ``conv_seg`` its ``classifier``, everything else keeps its
  name.
* :mod:`.hf_config`: what transformers can compute (:func:`check_upernet_config`,
  :func:`check_hf_compatible`), :func:`hf_config_for` (the ``UperNetConfig`` of a built mmseg
  model), :func:`image_processor_for` (the image processor of its data preprocessor) and
  :func:`compare_hf_configs`.
* :mod:`.folders`: :func:`export_hf` (``tools/deployment/export_hf.py``): config + checkpoint
  -> a folder that ``UperNetForSemanticSegmentation.from_pretrained`` loads; :func:`import_hf`
  (``tools/deployment/import_hf.py``): such a folder -> a checkpoint that ``tools/test.py``
  evaluates, checked against a config when one is given.

transformers is imported only by the functions that need it.
"""
from .folders import export_hf, import_hf, read_hf_folder
from .hf_config import (
    check_hf_compatible,
    check_upernet_config,
    compare_hf_configs,
    dataset_classes,
    hf_config_for,
    image_processor_for,
    load_upernet_config,
)
from .renaming import hf_to_upernet_state_dict, upernet_to_hf_state_dict

__all__ = ['check_hf_compatible', 'check_upernet_config', 'compare_hf_configs', 'dataset_classes',
           'export_hf', 'hf_config_for', 'hf_to_upernet_state_dict', 'image_processor_for',
           'import_hf', 'load_upernet_config', 'read_hf_folder', 'upernet_to_hf_state_dict']
