"""MultiTrain losses: per-dataset (projected) cross-entropy with masks, informative loss, uncertainty weighting,
label smoothing and Mixup/CutMix within each dataset's samples."""
from dalitrain.losses.classification import Targets, masked_cross_entropy_sum
from dalitrain.losses.mixing import mix_within_datasets
from dalitrain.losses.uncertainty import UncertaintyWeighting

__all__ = ["Targets", "masked_cross_entropy_sum", "mix_within_datasets", "UncertaintyWeighting"]
