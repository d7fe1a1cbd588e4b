"""Typed experiment configuration: one YAML file per experiment -> nested dataclasses.

Every component gets its own dataclass (data, model, optim, loss, train, eval). Loading checks each key against
the dataclass fields and each value against the field's type, so that a typo or a wrong type fails at start-up
with one line naming the file and the dotted key, instead of hours later. Command-line overrides
(`optim.lr=3e-4 data.datasets.0.weight=2`) go through the same check.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from dalitrain.data.augment import RandAugmentSpec
from dalitrain.errors import DalitrainError
from dalitrain.fileio import write_atomic


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `3e-4` (no dot) as a string; every config writes learning rates that way."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


class ConfigError(DalitrainError, ValueError):
    """A config problem, always one line: `<source>: <dotted.key>: <reason>`."""


@dataclass
class DatasetConfig:
    """One dataset of a multi-dataset run. Relative paths resolve against `DataConfig.base_dir`."""

    name: str
    manifest: str  # training manifest (`path label` lines or CSV with optional start/end)
    num_classes: int
    val_manifest: Optional[str] = None
    root: str = ""  # prefix joined to every relative video path of the manifests
    class_names: Optional[str] = None  # one name per line, or JSON {name: id}
    sampling: Literal["clip", "uniform", "segment", "keyframe"] = "clip"
    flip: bool = True  # False for datasets whose labels depend on left/right (SSv2)
    weight: Optional[float] = None  # sampling weight; None = proportional to the dataset's size
    # Action localisation (AVA's formats, dalitrain.data.ava): `manifest` / `val_manifest` are the annotation CSVs,
    # videos are `root/VIDEO_ID.*`, and every annotated keyframe is a sample (sampling: keyframe) whose boxes
    # go through the box head and binary cross-entropy; num_classes is the label map's size.
    task: Literal["classification", "localisation"] = "classification"
    labelmap: Optional[str] = None  # AVA `.pbtxt` (localisation)
    proposals: Optional[str] = None  # person detector boxes with scores on the training keyframes
    val_proposals: Optional[str] = None  # the same on the validation keyframes
    # The boxes a sample carries: the annotated ones, or the detector's above a threshold (0.8 for training, 0.2
    # for evaluation in the co-finetuning paper), a training proposal labelled with the actions of the annotated
    # box it overlaps with IoU >= 0.5 (none: a negative, no action)
    train_boxes: Literal["groundtruth", "proposals"] = "groundtruth"
    eval_boxes: Literal["groundtruth", "proposals"] = "groundtruth"
    train_proposal_threshold: float = 0.8
    val_proposal_threshold: float = 0.2
    excluded: Optional[str] = None  # AVA's excluded-timestamps CSV (frames left out of evaluation)
    start_second: float = 0.0  # the timestamp of a video's first frame (900 for AVA's movies cut at 15 min)
    box_jitter: float = 0.0  # training: each box side moves by up to this share of the box (0.15 for AVA)
    bad_rows: Literal["refuse", "skip"] = "refuse"  # annotation rows that break the format
    frequency_split: list[int] = field(default_factory=lambda: [10_000, 1_000])  # head above, tail below (AVA's)


@dataclass
class AugmentConfig:
    """Training augmentation beyond short side, crop and flip (dalitrain/data/augment.py has each op's definition;
    the DALI graph runs them). The defaults turn every one off; `configs/multitrain_k400_mit_ssv2_anet_mvitv2_b32x3
    .yaml` sets PySlowFast's MViTv2 recipe, as MultiTrain's released configs train, `..._paper_augment.yaml` the
    paper text's."""

    # short_side: scale the short side to a random length in data.short_side, then a crop_size square (the paper
    # text); resized: a random box of area share `area` and aspect ratio `aspect`, scaled to crop_size
    # (PySlowFast's TRAIN_JITTER_SCALES_RELATIVE / TRAIN_JITTER_ASPECT_RELATIVE)
    crop: Literal["short_side", "resized"] = "short_side"
    area: list[float] = field(default_factory=lambda: [0.08, 1.0])
    aspect: list[float] = field(default_factory=lambda: [0.75, 4 / 3])
    interpolation: Literal["linear", "cubic"] = "linear"  # of the crop's resize
    color_jitter: float = 0.0  # brightness, contrast, saturation factors in [1 - x, 1 + x]
    rand_augment: Optional[str] = None  # timm's string, e.g. rand-m7-n4-mstd0.5-inc1
    erase_prob: float = 0.0  # random erasing: one box through all frames, with this probability
    erase_mode: Literal["pixel", "rand", "const"] = "pixel"

    def active(self) -> bool:
        return self.crop != "short_side" or bool(self.color_jitter or self.rand_augment or self.erase_prob)


@dataclass
class DataConfig:
    datasets: list[DatasetConfig]
    base_dir: str = "."
    batch_size: int = 8  # per rank
    num_frames: int = 16
    stride: int = 4
    short_side: list[int] = field(default_factory=lambda: [256, 320])  # random short side in [min, max]
    crop_size: int = 224
    mixing: Literal["mixed", "per_batch"] = "mixed"
    batch_policy: Literal["weighted", "alternating"] = "weighted"  # how per_batch picks a batch's dataset
    epoch_size: Optional[int] = None  # samples per epoch; None = sum of the dataset sizes
    short_video: Literal["pad", "loop"] = "pad"  # videos shorter than num_frames * stride
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # repeated augmentation: each decoded clip gives this many independently augmented samples of one batch
    # (batch_size counts samples: batch_size / num_samples clips); an epoch visits each video once
    num_samples: int = 1
    device: Literal["auto", "cpu", "gpu"] = "auto"
    # "default": NVDEC on a GPU, the fastest measured CPU decoder on the CPU; pyav | torchcodec | dali | nvdec
    decoder: str = "default"
    num_threads: int = 2
    output_dtype: Literal["float32", "bfloat16"] = "float32"
    mean: list[float] = field(default_factory=lambda: [0.45, 0.45, 0.45])
    std: list[float] = field(default_factory=lambda: [0.225, 0.225, 0.225])
    scan_index: Optional[str] = None  # JSON index from `dalitrain scan`; its quarantine is honoured
    max_skipped_fraction: float = 0.01  # abort an epoch once more than this share of files failed
    decode_timeout_s: Optional[float] = 120.0  # a clip's decode past this is abandoned, its file quarantined


@dataclass
class ModelConfig:
    arch: str = "mvitv2_tiny"  # a registered name (`dalitrain info model`), e.g. mvitv2_b_32x3, vivit_fe_b
    head: Literal["linear", "mlp"] = "mlp"
    head_hidden_dim: int = 2048
    expander_hidden_dim: int = 4096
    drop_path_rate: float = 0.1
    head_dropout: float = 0.0  # on the pooled embedding before every classifier head (PySlowFast's DROPOUT_RATE)
    box_resolution: int = 7  # ROI-Align output cells per side of the box head (localisation), as PySlowFast's
    box_dropout: float = 0.5  # before the box head's linear layer (PySlowFast's AVA recipe)
    activation_checkpointing: bool = False
    compile: bool = False
    pretrained: Optional[str] = None  # weights to start from; the file's layout picks the importer
    # Fields of the architecture's own config dataclass to override, e.g. {stem: patch} (MViTv2) or
    # {temporal_depth: 24, temporal_pool: cls} (ViViT); an unknown field is refused naming the ones it has.
    arch_options: dict[str, Any] = field(default_factory=dict)
    # The whole model's weights (backbone, heads, expander) from a dalitrain training checkpoint of the same
    # architecture, resized where a shape follows the clip; optimizer and step are not taken (SFA's stage 2).
    init_from: Optional[str] = None
    init_skip: list[str] = field(default_factory=list)  # tensors (or module prefixes) kept at initialisation
    freeze: list[str] = field(default_factory=list)  # module groups the backbone names, e.g. [spatial] (ViViT)
    adapter: Literal["none", "mlp"] = "none"  # SFA's adapter between spatial and temporal transformer (ViViT)


@dataclass
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"  # sgd: synchronous SGD as the co-finetuning and SFA recipes
    lr: float = 2e-4
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    warmup_epochs: float = 10.0
    warmup_start_lr: float = 2e-6
    min_lr: float = 2e-6
    clip_grad_norm: Optional[float] = None
    accumulation_steps: int = 1
    fused: Literal["auto", "torch", "apex"] = "auto"  # apex only when NVIDIA apex is importable


@dataclass
class LossConfig:
    informative: bool = True
    informative_weight: float = 0.1
    std_weight: float = 25.0
    cov_weight: float = 1.0
    # MultiTrain's objective (dalitrain.losses.multitrain has the equations); the defaults are the released
    # configs' objective, `configs/multitrain_*_paper_objective.yaml` the paper's.
    projection: Literal["none", "paper", "released", "head_and_sum"] = "released"
    projection_weight: float = 1.0  # w: MULTI_PROJ_LOSS_WEIGHT
    projection_sparsity: float = 0.0  # weight of sum |W| over the projections (MULTI_PROJ_SPARSITY_WEIGHT, L1)
    reduction: Literal["per_sample", "per_dataset"] = "per_sample"
    uncertainty: Literal["none", "log_sigma", "sigma_sq"] = "none"
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 50
    output_dir: str = "runs/default"
    seed: int = 0
    log_every: int = 10
    checkpoint_every_epochs: int = 1
    keep_last: int = 2
    max_nonfinite_steps: int = 5
    time_budget_minutes: Optional[float] = None
    bf16: bool = True  # autocast on CUDA only


@dataclass
class EvalConfig:
    temporal_views: int = 3
    spatial_views: int = 3
    short_side: int = 256
    batch_size: int = 8
    every_epochs: int = 1


@dataclass
class ExperimentConfig:
    data: DataConfig
    # The training method: what the model builds beyond backbone and heads, and the criterion.
    #   multitrain: expander + cross-dataset projections, MultiTrain's objective (switches in `loss`);
    #   cofinetune: heads only, cross-entropy of each sample's own dataset head (per_batch data in its recipe).
    method: Literal["multitrain", "cofinetune"] = "multitrain"
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # A curriculum (SFA-ViViT's two stages): each entry is `name` plus the sections it changes, on top of the rest
    # of this file; stage k trains in `train.output_dir/NAME` and starts from stage k-1's best checkpoint
    # (`model.init_from`). Empty: one ordinary run. `expand_stages` makes the stages' configs.
    stages: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------
# Loading and checking


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against the annotation `tp` and build dataclasses; raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key, source)
            except ConfigError as err:
                errors.append(err)
        raise errors[0] if len(errors) == 1 else ConfigError(
            f"{source}: {key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{source}: {key}: must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}.{i}", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, source)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool or tp is str:
        if not isinstance(value, tp):
            raise ConfigError(f"{source}: {key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"config field {key} has an unsupported annotation {tp!r}")


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    where = prefix or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    dotted = (lambda name: f"{prefix}.{name}") if prefix else (lambda name: name)
    for name in raw:
        if name not in fields:
            raise ConfigError(f"{source}: {dotted(name)}: unknown key (known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name in raw:
            kwargs[name] = _convert(raw[name], hints[name], dotted(name), source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: {dotted(name)}: required key is missing")
    return cls(**kwargs)


def _parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"command line: {text!r}: an override is KEY=VALUE, e.g. optim.lr=3e-4")
    try:
        parsed = _yaml_load(value) if value else ""
    except yaml.YAMLError:
        parsed = value
    return key.split("."), parsed


def _apply_override(raw: dict, cls: type, path: list[str], value: Any, text: str) -> None:
    """Set `value` at `path` in the raw mapping, checking each step against the dataclass tree."""
    node: Any = raw
    tp: Any = cls
    for depth, part in enumerate(path):
        key = ".".join(path[: depth + 1])
        last = depth == len(path) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"command line: {key}: no list entry {part!r} (the list has {len(node)})")
            index = int(part)
            # a stage is a partial experiment: `stages.1.model.freeze=[spatial]` is checked as `model.freeze`
            tp = ExperimentConfig if path[0] == "stages" and depth == 1 else typing.get_args(tp)[0]
            if last:
                node[index] = value
            else:
                node = node[index]
            continue
        while typing.get_origin(tp) in (typing.Union, types.UnionType):  # Optional[Dataclass]
            tp = next(t for t in typing.get_args(tp) if t is not type(None))
        if typing.get_origin(tp) is dict:  # free-form options (model.arch_options.stem=patch): checked later
            if not last:
                raise ConfigError(f"command line: {key}: {'.'.join(path[:depth])} entries have no sub-keys")
            node[part] = value
            continue
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"command line: {key}: {'.'.join(path[:depth])} has no sub-keys")
        hints = typing.get_type_hints(tp)
        if path[0] == "stages" and depth == 2:  # a stage's own key beside the sections it changes
            hints = {"name": str, **hints}
        if part not in hints:
            raise ConfigError(f"command line: {key}: unknown key (known: {', '.join(hints)})")
        tp = hints[part]
        if last:
            node[part] = value
        else:
            child = node.get(part)
            if child is None:
                child = node[part] = {} if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict else []
            node = child


def _merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`, mapping by mapping; lists and values in `over` replace those of `base`."""
    merged = dict(base)
    for key, value in over.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """A config file's mapping; `base: OTHER.yaml` (relative to the file) puts the file on top of OTHER, so that
    variants of a recipe (ablations) state only what they change."""
    try:
        raw = _yaml_load(path.read_text())
    except FileNotFoundError:
        where = f" (the base of {chain[-1]})" if chain else ""
        raise ConfigError(f"{path}: no such config file{where}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(err, 'problem', err)})") from None
    raw = raw if raw is not None else {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level: expected a mapping of sections, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected the file name of another config, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in chain or base_path == path.resolve():
        raise ConfigError(f"{path}: base: {base} is already in the chain of bases (a cycle)")
    return _merge(_read_yaml(base_path, chain + (path.resolve(),)), raw)


def _check_consistent(cfg: ExperimentConfig, source: str) -> None:
    """What no single field's type can say: choices that need another section's values."""
    if cfg.data.mixing == "per_batch" and len(cfg.data.datasets) < 2:
        raise ConfigError(f"{source}: data.mixing: per_batch picks one dataset per batch, but data.datasets has "
                          f"{len(cfg.data.datasets)} (use mixed)")
    if cfg.method == "multitrain" and cfg.loss.projection != "none" and len(cfg.data.datasets) < 2:
        raise ConfigError(f"{source}: loss.projection: {cfg.loss.projection} projects between datasets, but "
                          f"data.datasets has {len(cfg.data.datasets)} (use none)")
    localisation = [i for i, d in enumerate(cfg.data.datasets) if d.task == "localisation"]
    for i in localisation:
        ds = cfg.data.datasets[i]
        if ds.labelmap is None:
            raise ConfigError(f"{source}: data.datasets.{i}.labelmap: a localisation dataset needs its label map")
        if ds.sampling != "keyframe":
            raise ConfigError(f"{source}: data.datasets.{i}.sampling: a localisation dataset samples keyframe "
                              f"clips (sampling: keyframe), got {ds.sampling}")
        if ds.eval_boxes == "proposals" and ds.val_proposals is None:
            raise ConfigError(f"{source}: data.datasets.{i}.eval_boxes: proposals, but val_proposals is not set")
        if ds.train_boxes == "proposals" and ds.proposals is None:
            raise ConfigError(f"{source}: data.datasets.{i}.train_boxes: proposals, but proposals is not set")
    if len(localisation) > 1:
        raise ConfigError(f"{source}: data.datasets: one localisation dataset per run (one box head), got "
                          f"{len(localisation)}")
    if localisation and cfg.method != "cofinetune":
        raise ConfigError(f"{source}: method: a localisation dataset trains with method: cofinetune (MultiTrain's "
                          "projections and informative loss are defined on clip logits)")
    for i, ds in enumerate(cfg.data.datasets):
        if ds.task == "classification" and ds.sampling == "keyframe":
            raise ConfigError(f"{source}: data.datasets.{i}.sampling: keyframe clips are for task: localisation")
    _check_augment(cfg.data, source)
    if cfg.loss.projection_sparsity > 0 and cfg.loss.projection == "none":
        raise ConfigError(f"{source}: loss.projection_sparsity: regularises the projections, but loss.projection "
                          "is none")


def _check_augment(data: DataConfig, source: str) -> None:
    augment = data.augment
    if data.num_samples < 1 or data.batch_size % data.num_samples:
        raise ConfigError(f"{source}: data.num_samples: {data.num_samples} must be >= 1 and divide data.batch_size "
                          f"({data.batch_size}): a batch holds batch_size / num_samples clips")
    for key, (low, high), bounds in (("area", augment.area, (0.0, 1.0)), ("aspect", augment.aspect, (0.0, None))):
        if not bounds[0] < low <= high or (bounds[1] is not None and high > bounds[1]):
            raise ConfigError(f"{source}: data.augment.{key}: [{low}, {high}] is not an increasing range inside "
                              f"({bounds[0]}, {bounds[1] or 'inf'}]")
    if not 0 <= augment.erase_prob <= 1 or not 0 <= augment.color_jitter < 1:
        raise ConfigError(f"{source}: data.augment: erase_prob must be in [0, 1] and color_jitter in [0, 1)")
    if augment.rand_augment is not None:
        if any(d.task == "localisation" for d in data.datasets):
            raise ConfigError(f"{source}: data.augment.rand_augment: its rotations, shears and translations would "
                              "move the persons away from their boxes (a localisation dataset is in data.datasets)")
        try:
            RandAugmentSpec.parse(augment.rand_augment)
        except ValueError as err:
            raise ConfigError(f"{source}: data.augment.rand_augment: {err}") from None


def expand_stages(cfg: ExperimentConfig, source: str = "config") -> list[tuple[str, ExperimentConfig]]:
    """The configs of a curriculum's stages in order, each checked as a whole config (a bad key names the stage);
    `[("", cfg)]` without stages. A stage's `model.init_from` is left to the runner (the previous stage's best
    checkpoint exists only once that stage has run) unless the stage sets it."""
    if not cfg.stages:
        return [("", cfg)]
    base = {k: v for k, v in config_to_dict(cfg).items() if k != "stages"}
    expanded, names = [], set()
    for i, stage in enumerate(cfg.stages):
        where = f"{source}: stages.{i}"
        name = stage.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in names:
            raise ConfigError(f"{where}.name: each stage needs a unique name usable as a folder, got {name!r}")
        names.add(name)
        changes = {k: v for k, v in stage.items() if k != "name"}
        if "stages" in changes:
            raise ConfigError(f"{where}.stages: a stage cannot have stages of its own")
        stage_cfg = _build(ExperimentConfig, _merge(base, changes), "", f"{where} ({name})")
        _check_consistent(stage_cfg, f"{where} ({name})")
        stage_cfg.train.output_dir = str(Path(cfg.train.output_dir) / name)
        expanded.append((name, stage_cfg))
    return expanded


def load_config(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    """Load a YAML experiment file (and its `base`), apply `KEY=VALUE` overrides, and check every key and type."""
    path = Path(path)
    raw = _read_yaml(path)
    for text in overrides:
        keys, value = _parse_override(text)
        _apply_override(raw, ExperimentConfig, keys, value, text)
    try:
        cfg = _build(ExperimentConfig, raw, "", str(path))
        _check_consistent(cfg, str(path))
        expand_stages(cfg, str(path))  # a bad stage fails now, not when the previous stages are done
        return cfg
    except ConfigError as err:
        if overrides:  # the bad value may come from the command line rather than the file
            raise ConfigError(f"{err} (with overrides {' '.join(overrides)})") from None
        raise


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config beside a run's outputs (temporary file + rename: never half-written)."""
    write_atomic(path, dump_config(cfg))


def resolve_path(base_dir: str | Path, path: str | None) -> Path | None:
    """A config path: absolute as given, relative ones against the data base directory."""
    if path is None:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p
