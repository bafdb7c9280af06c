"""Input pipeline: tfds ArrayRecord sources fed by grain, transforms, mixup/cutmix, and the
offline datasets (digits, fashion_mnist).

Public API: `dataset_info`, `make_train_iterator`, `make_eval_iterator`, `mixup_cutmix`,
`normalize_pixels`, `resolve_data_settings`; also `open_source`, `ensure_local_dataset`,
`DatasetNotPreparedError`.
"""

from jaxbones.data.datasets import (
    DatasetNotPreparedError,
    dataset_info,
    default_data_dir,
    ensure_local_dataset,
    open_source,
    register_segmentation_dataset,
)
from jaxbones.data.mixup import mixup_cutmix, smooth_one_hot
from jaxbones.data.pipeline import (
    IMAGE_DTYPES,
    make_eval_iterator,
    make_train_iterator,
    normalize_pixels,
    per_process_batch_size,
)
from jaxbones.data.settings import resolve_data_settings

__all__ = [
    "IMAGE_DTYPES",
    "DatasetNotPreparedError",
    "dataset_info",
    "default_data_dir",
    "ensure_local_dataset",
    "make_eval_iterator",
    "make_train_iterator",
    "mixup_cutmix",
    "normalize_pixels",
    "open_source",
    "per_process_batch_size",
    "register_segmentation_dataset",
    "resolve_data_settings",
    "smooth_one_hot",
]
