"""The judge: targets worked by hand, verdicts and accuracy bookkeeping checked with an all-knowing reader, the CLI."""

import json

import pytest
import torch

from minivid import captions, checkpoints, cli, data, dit_video, judge



def nano(seed=0):
    torch.manual_seed(seed)
    return judge.Model(judge.PRESETS["nano"])


def oracle(model, seed, split, num_clips, speed=0.1):
    """`model` with `read` replaced by the truth about clips 0..num_clips-1 of (seed, split), looked up by their pixels."""
    clips = data.moving_mnist(range(num_clips), seed=seed, split=split, num_frames=model.config.num_frames, speed=speed)
    labels = data.clip_labels(range(num_clips), seed=seed, split=split, speed=speed)
    counts, motion = judge.targets(labels["digits"], labels["angles"], model.config)
    truth = {clip.numpy().tobytes(): (n, m) for clip, n, m in zip(clips, counts, motion)}

    def read(video):
        answers = [truth[clip[: model.config.num_frames].numpy().tobytes()] for clip in video]
        motion = torch.stack([m for _, m in answers])
        return {"digits": torch.stack([n for n, _ in answers]), "motion": motion, "motion_scores": motion.float()}

    model.read = read
    return model, clips, labels


def test_targets_by_hand():
    cfg = judge.Config(tolerance=10.0)
    counts, motion = judge.targets(torch.tensor([[3, 7], [5, 5]]), torch.tensor([[20.0, 180.0], [100.0, 300.0]]), cfg)
    assert counts[0].tolist() == [0, 0, 0, 1, 0, 0, 0, 1, 0, 0] and counts[1, 5] == 2 and counts[1].sum() == 2
    # 20 degrees: 20 from "right", 25 from "up-right" (both within 22.5 + 10); 180 degrees: "left" only
    assert motion[0, 3].tolist() == [1, 1, 0, 0, 0, 0, 0, 0] and motion[0, 7].tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    # two 5s: one at 100 degrees (up, and up-left at 35 is out), one at 300 (down-right at 15, down at 30)
    assert motion[1, 5].tolist() == [0, 0, 1, 0, 0, 0, 1, 1]
    _, both = judge.targets(torch.tensor([[5, 5]]), torch.tensor([[100.0, 80.0]]), cfg)
    assert both[0, 5].tolist() == [0, 0, 2, 0, 0, 0, 0, 0] and both[0, 5, 1] == 0  # up-right: 35 and 55 degrees away
    _, strict = judge.targets(torch.tensor([[2]]), torch.tensor([[20.0]]), judge.Config(tolerance=0.0))
    assert strict[0, 2].tolist() == [1] + [0] * 7  # no tolerance: "right" only


def test_network_shapes_loss_and_frames_needed():
    model = nano()
    clips, digits, angles = judge.make_batch(0, 3)
    assert clips.shape == (3, 20, 1, 64, 64) and digits.shape == angles.shape == (3, 2)
    counts, motion = model(clips)
    assert counts.shape == (3, 10, 3) and motion.shape == (3, 10, 8, 3)
    loss = model.loss((clips, digits, angles))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="first 10 frames"):
        model.read(clips[:, :5])


def test_verdicts_with_an_all_knowing_reader():
    model, clips, labels = oracle(nano(), seed=0, split="test", num_clips=16)
    true = captions.describe_labels(labels)
    verdict = model.score(clips, true)
    assert verdict["faithful"].all() and verdict["digits"].all() and verdict["directions"].all()
    turned = {"digits": labels["digits"], "directions": (labels["directions"] + 2) % 8}  # every digit turned 90 degrees
    verdict = model.score(clips, captions.describe_labels(turned))
    assert verdict["digits"].all() and not verdict["directions"].any() and not verdict["faithful"].any()
    swapped = {"digits": (labels["digits"] + 1) % 10, "directions": labels["directions"]}
    assert not model.score(clips, captions.describe_labels(swapped))["digits"].any()
    one = [f"{captions.article(d)} {d} moving {captions.DIRECTIONS[k]}" for d, k in zip(labels["digits"][:, 0].tolist(),
                                                                                       labels["directions"][:, 0].tolist())]
    assert not model.score(clips, one)["faithful"].any()  # half the digits named: the counts do not match
    assert all(captions.parse(text) for text in model.describe(clips))


def test_score_bad_input():
    model = nano()
    clips = data.moving_mnist(range(2), num_frames=10)
    with pytest.raises(ValueError, match="2 clips need 2 captions"):
        model.score(clips, ["a 1 moving up"])
    with pytest.raises(ValueError, match="unknown word 'sideways'"):
        model.score(clips, "a 1 moving sideways")
    verdict = model.score(clips, "a 1 moving up")  # one caption for every clip
    assert verdict["faithful"].shape == (2,) and verdict["faithful"].dtype == torch.bool


def test_accuracy_bookkeeping_with_an_all_knowing_reader():
    model, _, _ = oracle(nano(), seed=data.STANDARD_TEST_SEED, split="test", num_clips=12)
    result = judge.accuracy(model, num_clips=12, batch_size=5)
    assert {k: result[k] for k in ("digits", "directions", "captions", "wrong_digit", "wrong_direction")} == \
        {"digits": 1.0, "directions": 1.0, "captions": 1.0, "wrong_digit": 1.0, "wrong_direction": 1.0}
    untrained = judge.accuracy(nano(), num_clips=4, batch_size=4)
    assert all(0 <= untrained[k] <= 1 for k in ("digits", "directions", "captions", "wrong_digit", "wrong_direction"))


def test_faithfulness_of_a_perfect_and_of_a_real_generator():
    model, _, _ = oracle(nano(), seed=0, split="test", num_clips=6)

    class Perfect(torch.nn.Module):
        """Answers each caption with the real test clip it came from."""

        def __init__(self):
            super().__init__()
            clips, texts = data.moving_mnist(range(6), seed=0, split="test", num_frames=10, captions=True)
            self.clips = dict(zip(texts, clips))
            self.w = torch.nn.Parameter(torch.zeros(1))

        def generate(self, context, num_frames, seed=0, progress=True, caption=None, guidance=0.0):
            return torch.stack([self.clips[c][:num_frames] for c in caption])

    result = judge.faithfulness(Perfect(), model, num_clips=6, batch_size=4)
    assert result["faithful"] == result["digits"] == result["directions"] == 1.0 and result["clips"] == 6
    torch.manual_seed(0)
    dit = dit_video.Model(dit_video.PRESETS["nano"])
    for conditional in (True, False):
        result = judge.faithfulness(dit, nano(), num_clips=2, batch_size=2, guidance=1.0, conditional=conditional, steps=1)
        assert 0 <= result["faithful"] <= result["digits"] <= 1 and result["conditional"] is conditional


def test_cli_train_evaluate_and_faithfulness(tmp_path, capsys):
    weights = tmp_path / "judge.pt"
    assert cli.main(["train", "judge", "--steps", "2", "--device", "cpu", "--preset", "nano", "--batch-size", "4",
                     "--out", str(tmp_path / "run"), "--export", str(weights)]) == 0
    loaded = checkpoints.load(weights)
    assert loaded.family == "judge" and loaded.config == judge.PRESETS["nano"]  # tuples survive the round trip
    assert cli.main(["evaluate", str(weights), "--clips", "4", "--batch-size", "4", "--device", "cpu"]) == 0
    accuracy = json.loads(weights.with_suffix(".json").read_text())["metrics"]["accuracy"]
    assert accuracy["clips"] == 4 and 0 <= accuracy["captions"] <= 1
    dit = tmp_path / "dit.pt"
    assert cli.main(["train", "dit", "--steps", "1", "--device", "cpu", "--preset", "nano", "--batch-size", "2",
                     "--out", str(tmp_path / "run_dit"), "--export", str(dit)]) == 0
    assert cli.main(["evaluate", str(dit), "--judge", str(weights), "--guidance", "0,2", "--clips", "2",
                     "--batch-size", "2", "--device", "cpu", "--kwargs", '{"steps": 1}']) == 0
    table = json.loads(dit.with_suffix(".json").read_text())["metrics"]["faithfulness"]
    assert [(row["guidance"], row["conditional"]) for row in table] == [(0.0, True), (2.0, True), (0.0, False)]
    capsys.readouterr()
    assert cli.main(["evaluate", str(weights), "--clips", "2", "--device", "cpu"]) == 0
    assert cli.main(["evaluate", str(dit), "--judge", str(weights), "--guidance", "-1", "--device", "cpu"]) == 2
    assert "--guidance values must be >= 0" in capsys.readouterr().err
    assert cli.main(["evaluate", str(dit), "--judge", str(dit), "--device", "cpu"]) == 2
    assert "expects a judge export" in capsys.readouterr().err


def test_cli_train_judge_defaults(tmp_path):
    """`minivid train judge --steps N` with the family's defaults (a small batch keeps this test quick)."""
    assert cli.main(["train", "judge", "--steps", "2", "--device", "cpu", "--batch-size", "4", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "checkpoint.pt").exists()


def test_two_digits_of_one_class_are_counted_per_direction():
    model = nano()
    motion = torch.zeros(1, 10, 8, dtype=torch.long)
    motion[0, 5, 2] = motion[0, 5, 0] = 1  # one 5 moving up, one moving right
    digits = torch.zeros(1, 10, dtype=torch.long)
    digits[0, 5] = 2
    model.read = lambda clips: {"digits": digits, "motion": motion, "motion_scores": motion.float()}
    clip = torch.zeros(1, 10, 1, 64, 64)
    verdict = {text: bool(model.score(clip, text)["faithful"]) for text in (
        "a 5 moving up and a 5 moving right", "a 5 moving right and a 5 moving up", "a 5 moving up and a 5 moving up",
        "a 5 moving up", "a 5 moving up and a 5 moving right and a 5 moving left")}
    assert verdict == {"a 5 moving up and a 5 moving right": True, "a 5 moving right and a 5 moving up": True,
                       "a 5 moving up and a 5 moving up": False, "a 5 moving up": False,
                       "a 5 moving up and a 5 moving right and a 5 moving left": False}
    assert sorted(captions.parse(model.describe(clip)[0])) == [(5, "right"), (5, "up")]
