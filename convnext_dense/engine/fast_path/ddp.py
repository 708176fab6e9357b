"""The DDP wrapper of a channels-last run (``fast_path.channels_last``)."""
from __future__ import annotations

from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch import nn

from ..build import unwrap_model
from .transforms import use_channels_last


@MODEL_WRAPPERS.register_module()
class ChannelsLastDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's ``MMDistributedDataParallel`` of the model converted to channels-last first
    (``fast_path.channels_last``; same arguments).

    DDP lays out each parameter's slot in its gradient buckets with the parameter's strides
    when it is built. mmengine builds it in the Runner's constructor, long before a hook could
    convert the model; converted afterwards, every step's channels-last gradients no longer
    match their NCHW bucket views ("Grad strides do not match bucket view strides") and are
    copied into them, and the averaged gradients come back with NCHW strides.
    """

    def __init__(self, module: nn.Module, **kwargs) -> None:
        use_channels_last(unwrap_model(module))
        super().__init__(module=module, **kwargs)
