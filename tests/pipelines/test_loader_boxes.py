"""Localisation samples through the loader: keyframe clips of the synthetic AVA, boxes moved with each clip's crop
and flip (they still sit on the actors in the augmented pixels), replayed on resume, whole frames in evaluation."""
import numpy as np
import pytest
import torch

from dalitrain.config import DataConfig, DatasetConfig, EvalConfig
from dalitrain.data.ava import read_boxes, read_labelmap
from dalitrain.data.records import load_records
from dalitrain.data.synth_ava import generate_ava
from dalitrain.pipelines.loader import eval_loader, train_loader

MEAN, STD = 0.5, 0.25


@pytest.fixture(scope="module")
def ava(tmp_path_factory):
    root = tmp_path_factory.mktemp("ava")
    generate_ava(root, "ava_tiny", seed=0)
    return root


def ava_data(root, **overrides) -> DataConfig:
    dataset = DatasetConfig(name="ava", task="localisation", sampling="keyframe", manifest="annotations/train.csv",
                            val_manifest="annotations/val.csv", root="videos", labelmap="annotations/labelmap.pbtxt",
                            num_classes=5, excluded="annotations/excluded.csv",
                            val_proposals="annotations/proposals_val.csv")
    fields = dict(datasets=[dataset], base_dir=str(root), batch_size=3, num_frames=4, stride=1,
                  short_side=[48, 56], crop_size=32, device="cpu", decoder="pyav", mean=[MEAN] * 3, std=[STD] * 3)
    fields.update(overrides)
    return DataConfig(**fields)


def actor_pixels(video: torch.Tensor, boxes: torch.Tensor, clip: int) -> list[bool]:
    """Per box of `clip`: does its region of the clip's keyframe (the middle frame) hold a saturated actor colour
    (the background is muted: channels within 60 of each other)."""
    frame = (video[clip, :, video.shape[2] // 2] * STD + MEAN) * 255  # [C, H, W]
    spread = frame.max(dim=0).values - frame.min(dim=0).values  # [H, W]
    size = frame.shape[-1]
    found = []
    for _, x1, y1, x2, y2 in boxes[boxes[:, 0] == clip].tolist():
        region = spread[int(y1 * size):int(np.ceil(y2 * size)), int(x1 * size):int(np.ceil(x2 * size))]
        found.append(region.numel() > 0 and bool(region.max() > 100))
    return found


def test_training_boxes_follow_crop_and_flip_onto_the_actors(ava):
    loader = train_loader(ava_data(ava), seed=3)
    flipped = 0
    for step, batch in enumerate(loader):
        assert batch.boxes.shape[1] == 5 and batch.box_labels.shape == (batch.boxes.shape[0], 5)
        assert ((batch.boxes[:, 1:] >= 0) & (batch.boxes[:, 1:] <= 1)).all()
        assert (batch.boxes[:, 3] > batch.boxes[:, 1]).all() and (batch.boxes[:, 4] > batch.boxes[:, 2]).all()
        for clip in range(batch.video.shape[0]):
            assert all(actor_pixels(batch.video, batch.boxes, clip))
        flipped += sum(s.flip for s in loader.plan[step])
    assert flipped > 0  # some clips were flipped, and their boxes still sit on the actors


def test_box_jitter_is_replayed_on_resume_and_changes_the_boxes(ava):
    data = ava_data(ava)
    data.datasets[0].box_jitter = 0.15
    first = [b.boxes for b in train_loader(data, seed=1, epoch=2)]
    resumed = [b.boxes for b in train_loader(data, seed=1, epoch=2, start_step=1)]
    assert len(resumed) == len(first) - 1
    for a, b in zip(first[1:], resumed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    plain = [b.boxes for b in train_loader(ava_data(ava), seed=1, epoch=2)]
    assert any(not torch.equal(a, b) for a, b in zip(first, plain) if a.shape == b.shape)


def test_evaluation_sees_whole_frames_with_the_annotated_boxes(ava):
    data = ava_data(ava)
    actions = read_labelmap(ava / "annotations" / "labelmap.pbtxt")
    (records,), _ = load_records(data, "val")
    truth = read_boxes(ava / "annotations" / "val.csv", set(actions), scored=False)
    seen = 0
    for batch in eval_loader(data, EvalConfig(batch_size=2)):
        for clip, (index, valid) in enumerate(zip(batch.index.tolist(), batch.valid.tolist())):
            if not valid:
                continue
            keyframe = records.boxes[index]
            rows = batch.boxes[batch.boxes[:, 0] == clip, 1:].numpy()
            np.testing.assert_allclose(rows, keyframe.boxes, atol=1e-6)  # whole frame, no flip: as annotated
            key = f"{keyframe.video_id},{keyframe.timestamp:04d}"
            expected = {(round(b.x1, 4), round(b.y1, 4)) for b in truth[key]}
            assert {(round(float(x1), 4), round(float(y1), 4)) for x1, y1, _, _ in rows} == expected
            assert all(actor_pixels(batch.video, batch.boxes, clip))
            seen += 1
    assert seen == len(records.videos)


def test_evaluation_with_proposals_keeps_every_annotated_keyframe(ava):
    data = ava_data(ava)
    data.datasets[0].eval_boxes = "proposals"
    (proposals,), _ = load_records(data, "val")
    data.datasets[0].eval_boxes = "groundtruth"
    (truth,), _ = load_records(data, "val")
    keys = lambda records: [(b.video_id, b.timestamp) for b in records.boxes]  # noqa: E731
    assert keys(proposals) == keys(truth)
    assert all(b.labels.sum() == 0 for b in proposals.boxes)  # a detector's boxes carry no actions
    assert sum(len(b.boxes) for b in proposals.boxes) >= sum(len(b.boxes) for b in truth.boxes)  # plus false positives


def test_ranks_draw_their_own_box_jitter(ava):
    data = ava_data(ava)
    data.datasets[0].box_jitter = 0.15
    # the same plan on two "ranks" (one shard each, so both hold the same clips): only the rank differs
    first = [b.boxes for b in train_loader(data, seed=1, shard_id=0, num_shards=1)]
    loader = train_loader(data, seed=1, shard_id=0, num_shards=1)
    loader.shard_id = 1
    second = [b.boxes for b in loader]
    assert any(not torch.equal(a, b) for a, b in zip(first, second) if a.shape == b.shape)
