"""Normalisation constants shared by the registry, the data pipeline and the configs.

Per-channel mean/std of images scaled to [0, 1], as the reference implementations use them
(torchvision's ImageNet statistics, Inception/Google's (0.5, 0.5, 0.5), OpenAI CLIP's).
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
