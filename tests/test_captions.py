"""Captioned Moving MNIST: labels read off the generator, true to the pixels; the grammar, tokenizer and parser."""

import math

import pytest
import torch

from minivid import captions, data


ALL_CAPTIONS = ["a 3 moving down-left and a 7 moving right", "an 8 moving up", "a 0 moving left and a 1 moving up-right "
                "and a 9 moving down"]


def test_captions_are_a_pure_function_of_seed_and_index():
    clips, texts = data.moving_mnist([5, 9, 2], seed=3, captions=True)
    all_clips, all_texts = data.moving_mnist(range(10), seed=3, captions=True)
    assert texts == [all_texts[5], all_texts[9], all_texts[2]]
    assert torch.equal(clips, all_clips[[5, 9, 2]])
    assert torch.equal(clips, data.moving_mnist([5, 9, 2], seed=3))  # asking for captions changes no pixel
    assert data.moving_mnist(range(10), seed=4, captions=True)[1] != all_texts
    labels = data.clip_labels([5, 9, 2], seed=3)
    assert captions.describe_labels(labels) == texts
    assert all(captions.parse(t) for t in all_texts)  # every caption the generator writes is grammatical


def test_dataset_and_training_batch_give_captions():
    ds = data.MovingMNIST(length=4, seed=1)
    clips, texts = ds.batch([0, 3], captions=True)
    assert clips.shape == (2, 20, 1, 64, 64) and texts == data.moving_mnist([0, 3], seed=1, captions=True)[1]
    clips, texts = data.training_batch(1, 3, seed=1, captions=True)
    assert texts == data.moving_mnist([3, 4, 5], seed=1, captions=True)[1]


def _named_components(direction: str) -> dict:
    """'down-left' -> {'row': +1, 'col': -1}: the signs a displacement must have (rows grow downwards)."""
    signs = {}
    for part in direction.split("-"):
        if part in ("up", "down"):
            signs["row"] = -1 if part == "up" else 1
        else:
            signs["col"] = -1 if part == "left" else 1
    return signs


def test_directions_match_the_trajectories():
    idx = torch.arange(256)
    labels = data.clip_labels(idx, seed=0)
    pos, vel = data.trajectories(idx, 0, 20, 2, 0.1)
    step = pos[:, 1] - pos[:, 0]  # (b, d, 2): displacement over the first frame, as (row, col)
    no_bounce = (vel[:, 1] * vel[:, 0] > 0).all(dim=-1)  # (b, d): neither component flipped in that frame
    checked = 0
    for b, d in no_bounce.nonzero().tolist():
        name = captions.DIRECTIONS[int(labels["directions"][b, d])]
        row, col = step[b, d].tolist()
        seen = math.degrees(math.atan2(-row, col)) % 360  # the displacement's compass angle on the screen
        assert abs((seen - 45 * int(labels["directions"][b, d]) + 180) % 360 - 180) <= 22.5 + 1e-6
        assert abs((seen - float(labels["angles"][b, d]) + 180) % 360 - 180) < 1e-3  # the label is the true heading
        for axis, sign in _named_components(name).items():
            assert sign * (row if axis == "row" else col) > 0
        checked += 1
    assert checked > 300  # most digits do not bounce in their first frame


def test_captions_match_the_pixels():
    """One-digit clips: the sprite at frame 0 is an MNIST image of the named class, and it moves the named way."""
    idx = torch.arange(64)
    clips, texts = data.moving_mnist(idx, seed=5, num_digits=1, captions=True)
    pos, vel = data.trajectories(idx, 5, 20, 1, 0.1)
    pool, pool_labels = data.digit_pool("train"), data.digit_labels("train")
    rows, cols = torch.arange(64).float(), torch.arange(64).float()
    for i, text in enumerate(texts):
        [(digit, direction)] = captions.parse(text)
        r, c = (pos[i, 0, 0] * 36).long().tolist()
        crop = (clips[i, 0, 0, r : r + 28, c : c + 28] * 255).round().to(torch.uint8)
        same = (pool == crop).flatten(1).all(dim=1)
        assert same.any() and (pool_labels[same] == digit).all()
        if (vel[i, 1] * vel[i, 0] < 0).any():  # bounced in the first frame: the caption names the start
            continue
        mass = [clips[i, t, 0] for t in (0, 1)]
        centroid = [torch.stack([(m.sum(1) * rows).sum(), (m.sum(0) * cols).sum()]) / m.sum() for m in mass]
        shift = centroid[1] - centroid[0]  # (row, col) in pixels
        for axis, sign in _named_components(direction).items():
            assert sign * float(shift[0 if axis == "row" else 1]) > 0.99  # at least a whole pixel the named way


def test_other_labels_bounces_and_speeds():
    idx = torch.arange(128)
    labels = data.clip_labels(idx, seed=2, num_frames=20, speed=(0.05, 0.15))
    pos, vel = data.trajectories(idx, 2, 20, 2, (0.05, 0.15))
    assert torch.allclose(labels["speeds"], vel[:, 0, 0].norm(dim=-1).float())
    assert labels["speeds"].min() >= 0.05 and labels["speeds"].max() <= 0.15
    steps = pos[:, 1:] - pos[:, :-1]  # (b, t - 1, d, 2)
    monotone = ((steps > 0).all(dim=1) | (steps < 0).all(dim=1)).all(dim=-1)  # (b, d): never turned back
    assert torch.equal(labels["bounces"] == 0, monotone)
    assert labels["bounces"].max() >= 2 and set(labels) == {"digits", "angles", "directions", "bounces", "speeds"}


def test_digit_labels_come_with_the_pools():
    train, test = data.digit_labels("train"), data.digit_labels("test")
    assert len(train) == len(data.digit_pool("train")) and len(test) == len(data.digit_pool("test"))
    assert torch.equal(torch.bincount(train), torch.full((10,), 400))
    assert torch.equal(torch.bincount(test), torch.full((10,), 100))


def test_describe_and_parse_by_hand():
    assert captions.describe([3, 7], [5, 0]) == "a 3 moving down-left and a 7 moving right"
    assert captions.describe([8], ["up"]) == "an 8 moving up"
    assert captions.parse("a 3 moving down-left and a 7 moving right") == [(3, "down-left"), (7, "right")]
    assert captions.parse("  A 8   moving LEFT ") == [(8, "left")]
    assert captions.canonical("a 8 moving left") == "an 8 moving left"
    assert len(captions.VOCAB) == 23 and captions.VOCAB[captions.PAD_ID] == captions.PAD


def test_tokenizer_round_trip():
    texts = data.moving_mnist(range(64), seed=0, captions=True)[1] + ALL_CAPTIONS
    ids = captions.encode(texts)
    assert ids.shape == (len(texts), captions.MAX_WORDS) and ids.dtype == torch.long
    assert captions.decode(ids) == texts
    one = captions.encode(texts[0])
    assert one.shape == (captions.MAX_WORDS,) and captions.decode(one) == texts[0]
    n = len(texts[0].split())
    assert (one[n:] == captions.PAD_ID).all() and (one[:n] != captions.PAD_ID).all()
    assert torch.equal(captions.encode("A 8 moving LEFT"), captions.encode("an 8 moving left"))  # canonical ids
    none = captions.encode([None, "a 1 moving up"])
    assert (none[0] == captions.PAD_ID).all() and captions.decode(none) == [None, "a 1 moving up"]


@pytest.mark.parametrize("caption, message", [
    ("", "caption is empty"),
    ("   ", "caption is empty"),
    ("a 3 moving sideways", "unknown word 'sideways'.*vocabulary is: a, an, moving, and, 0, 1, .*down-right"),
    ("a 3 moving left and a 12 moving up", "unknown word '12'"),
    ("a 1 moving up and a 2 moving up and a 3 moving up and a 4 moving up", "19 words, at most 14"),
    ("3 moving left", "word 1 is '3', expected 'a' or 'an'"),
    ("a 3 left", "word 3 is 'left', expected 'moving'"),
    ("a 3 moving left a 7 moving right", "word 5 is 'a', expected 'and' or the end"),
    ("a 3 moving left and", "ends where 'a' or 'an' should follow"),
    ("a moving 3 left", "expected a digit 0-9"),
    (5, "a caption is a string"),
])
def test_bad_captions_say_what_is_allowed(caption, message):
    with pytest.raises(ValueError, match=message):
        captions.parse(caption)
    with pytest.raises(ValueError, match=message):
        captions.encode([caption])


def test_bad_tokenizer_and_describe_input():
    with pytest.raises(ValueError, match=r"token ids lie in \[0, 22\]"):
        captions.decode(torch.tensor([1, 40]))
    with pytest.raises(ValueError, match="integer ids"):
        captions.decode(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="a caption string or a list"):
        captions.encode(5)
    with pytest.raises(ValueError, match="more than the 4 ids"):
        captions.encode(["a 3 moving left and a 4 moving up"], length=4)
    with pytest.raises(ValueError, match="1 to 3 digits"):
        captions.describe([1, 2, 3, 4], [0, 0, 0, 0])
    with pytest.raises(ValueError, match="digits are 0-9"):
        captions.describe([10], [0])
