# CLIP's input normalisation, on RGB (open_clip constants.py OPENAI_DATASET_MEAN / _STD, x 255),
# for the configs with CLIP weights to give their data_preprocessor; the paper's configs use
# ImageNet's.
clip_mean = [255 * v for v in (0.48145466, 0.4578275, 0.40821073)]
clip_std = [255 * v for v in (0.26862954, 0.26130258, 0.27577711)]
