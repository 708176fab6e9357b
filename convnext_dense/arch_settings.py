"""The ConvNeXt architectures as data: the depths and widths of every published size, which
paper published which size, and the layer-id schemes of layer-wise learning-rate decay.

"A ConvNet for the 2020s" (Liu et al., CVPR 2022) and "ConvNeXt V2: Co-designing and Scaling
ConvNets with Masked Autoencoders" (Woo et al., CVPR 2023). Pure data, importing nothing: the model
(:mod:`convnext_dense.models.convnext`), the checkpoint layouts (:mod:`convnext_dense.checkpoint`,
which tell a size from a state dict) and the optimizer constructor read it without depending on
each other.
"""

NUM_STAGES = 4

# depths and dims of every published size. Any size can be built as V1 or V2 (timm publishes
# V1 atto..nano too); `version` defaults to the paper that published the size. `norm_eps`: the
# LayerNorm epsilon of a size whose published weights were trained with another than 1e-6.
ARCH_SETTINGS = {
    'atto': dict(depths=[2, 2, 6, 2], dims=[40, 80, 160, 320]),
    'femto': dict(depths=[2, 2, 6, 2], dims=[48, 96, 192, 384]),
    'pico': dict(depths=[2, 2, 6, 2], dims=[64, 128, 256, 512]),
    'nano': dict(depths=[2, 2, 8, 2], dims=[80, 160, 320, 640]),
    'tiny': dict(depths=[3, 3, 9, 3], dims=[96, 192, 384, 768]),
    'small': dict(depths=[3, 3, 27, 3], dims=[96, 192, 384, 768]),
    'base': dict(depths=[3, 3, 27, 3], dims=[128, 256, 512, 1024]),
    'large': dict(depths=[3, 3, 27, 3], dims=[192, 384, 768, 1536]),
    'xlarge': dict(depths=[3, 3, 27, 3], dims=[256, 512, 1024, 2048]),
    # open_clip's CLIP ConvNeXt-XXLarge, the only weights of this size (timm's convnext_xxlarge
    # builds it with norm_eps=1e-5; open_clip's model_configs/convnext_xxlarge.json keeps that)
    'xxlarge': dict(depths=[3, 4, 30, 3], dims=[384, 768, 1536, 3072], norm_eps=1e-5),
    'huge': dict(depths=[3, 3, 27, 3], dims=[352, 704, 1408, 2816]),
}
# The sizes each paper published (Liu et al. 2022 + timm's xxlarge; Woo et al. 2023).
V1_ARCHS = ('tiny', 'small', 'base', 'large', 'xlarge', 'xxlarge')
V2_ARCHS = ('atto', 'femto', 'pico', 'nano', 'tiny', 'base', 'large', 'huge')
VERSIONS = ('v1', 'v2')
DECAY_TYPES = ('layer_wise', 'stage_wise')
