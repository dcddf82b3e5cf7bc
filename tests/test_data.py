"""Moving MNIST as Srivastava et al. (2015) define it, reproducible per (seed, index)."""

import pytest
import torch

from minivid import data, toysets


def test_shapes_range_and_dtype():
    clips = data.moving_mnist(range(6), seed=0)
    assert clips.shape == (6, 20, 1, 64, 64)
    assert clips.dtype == torch.float32
    assert clips.min() >= 0 and clips.max() <= 1
    assert (clips.flatten(2).amax(-1) > 0.5).all()  # every frame shows a digit


def test_configurable_frames_digits_size():
    clips = data.moving_mnist(range(3), seed=1, num_frames=7, num_digits=3, size=48)
    assert clips.shape == (3, 7, 1, 48, 48)


def test_pure_function_of_seed_and_index():
    a = data.moving_mnist([5, 9, 2], seed=3)
    b = data.moving_mnist(range(10), seed=3)[[5, 9, 2]]
    assert torch.equal(a, b)
    assert not torch.equal(data.moving_mnist([5], seed=3), data.moving_mnist([5], seed=4))


def test_golden_numbers():
    """Seeded values that must not change between versions or machines (the test set depends on them)."""
    clips = data.standard_test_set(4)
    assert round(float(clips.double().sum()), 3) == pytest.approx(GOLDEN_SUM, abs=1e-3)  # float64: any thread count
    u = data.uniform(2015, torch.arange(3), stream=0)
    assert torch.allclose(u, torch.tensor(GOLDEN_UNIFORM), atol=1e-7)


GOLDEN_SUM = 15474.177  # recorded from minivid 0.1; a change here means every published test set changed
GOLDEN_UNIFORM = [0.09405279159545898, 0.13743174076080322, 0.2726041078567505]


def test_digits_stay_inside_and_bounce():
    pos, vel = data.trajectories(torch.arange(64), seed=0, num_frames=40, num_digits=2, speed=0.1)
    assert pos.min() >= 0 and pos.max() <= 1  # fraction of the free range: sprite fully inside the canvas
    # velocity flips sign exactly where a coordinate reaches a wall, and keeps its size
    assert torch.allclose(vel.abs(), vel[:, :1].abs().expand_as(vel), atol=1e-6)
    flips = (vel[:, 1:] * vel[:, :-1]) < 0
    assert flips.any()
    step = (pos[:, 1:] - pos[:, :-1]).abs()
    assert torch.all(step <= vel[:, :1].abs() + 1e-6)  # never moves faster than its speed


def test_render_per_pixel_max():
    a = torch.zeros(1, 2, 4, 4)
    a[0, 0] = 0.3
    a[0, 1] = 0.8
    offsets = torch.tensor([[[[0, 0], [2, 2]]]])  # (b, t, d, 2): overlap on a 2x2 patch
    canvas = data.render(a, offsets, 8)[0, 0]
    assert canvas[2:4, 2:4].eq(0.8).all() and canvas[0, 0] == 0.3 and canvas[7, 0] == 0


def test_train_and_test_digits_are_disjoint():
    train, test = data.digit_pool("train"), data.digit_pool("test")
    assert len(train) == 4000 and len(test) == 1000
    train_set = {bytes(x) for x in train.numpy()}
    assert not any(bytes(x) in train_set for x in test.numpy())


def test_gpu_path_matches_cpu_when_available():
    if not torch.cuda.is_available():
        pytest.skip("no GPU on this machine")
    assert torch.equal(data.moving_mnist(range(8), seed=0, device="cuda").cpu(), data.moving_mnist(range(8), seed=0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_frames": 0}, "num_frames"),
        ({"num_digits": 0}, "num_digits"),
        ({"size": 20}, "size"),
        ({"speed": -1}, "speed"),
        ({"split": "val"}, "split"),
        ({"digits": "web"}, "digits"),
    ],
)
def test_bad_arguments_say_what_was_expected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.moving_mnist(range(2), **kwargs)


def test_negative_index_rejected():
    with pytest.raises(ValueError, match=">= 0"):
        data.moving_mnist([-1])


def test_dataset_class_indexing():
    ds = data.MovingMNIST(length=5, seed=2)
    assert len(ds) == 5 and ds[4].shape == (20, 1, 64, 64)
    assert torch.equal(ds[-1], ds[4])
    with pytest.raises(IndexError):
        ds[5]


def test_full_mnist_offline_gives_clear_error(monkeypatch):
    monkeypatch.setattr(data, "_load_mnist_offline", lambda split: (_ for _ in ()).throw(FileNotFoundError("not cached")))
    monkeypatch.setattr(data, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(RuntimeError, match="shipped"):
        data._full_mnist("train")


@pytest.mark.parametrize("name", sorted(toysets.TOY_SETS))
def test_toy_sets(name):
    toy = toysets.get(name)
    clips = toysets.generate(name, range(4), seed=0, num_frames=12)
    assert clips.shape == (4, 12, toy.channels, 64, 64)
    assert clips.min() >= 0 and clips.max() <= 1
    assert torch.equal(clips[2:], toysets.generate(name, [2, 3], seed=0, num_frames=12))
    # values are multiples of 1/255, so a uint8 copy is exact
    assert torch.equal((clips * 255).round() / 255, clips)
    assert (clips[:, 1:] != clips[:, :-1]).any()  # something moves


def test_bouncing_balls_conserve_energy():
    pos, vel, radius = toysets.bouncing_balls_states(range(8), seed=0, num_frames=30)
    mass = radius**2  # mass proportional to radius squared
    energy = (mass[:, None] * vel.pow(2).sum(-1)).sum(-1)  # (b, t): elastic collisions keep it
    assert torch.allclose(energy, energy[:, :1].expand_as(energy), rtol=1e-4)
    assert pos.min() >= 0 and pos.max() <= 1


def test_unknown_toy_set():
    with pytest.raises(ValueError, match="expected one of"):
        toysets.get("nope")


def test_speed_range_draws_one_speed_per_clip():
    idx = torch.arange(64)
    pos, vel = data.trajectories(idx, 0, 3, 2, (0.05, 0.15))
    speeds = vel[:, 0].norm(dim=-1)  # (b, d): both digits of a clip share its speed
    assert torch.allclose(speeds[:, 0], speeds[:, 1]) and speeds.min() >= 0.05 and speeds.max() <= 0.15
    assert speeds[:, 0].std() > 0.02  # clips really differ
    again, _ = data.trajectories(idx[10:20], 0, 3, 2, (0.05, 0.15))
    assert torch.equal(again, pos[10:20])  # still a pure function of (seed, index)
    fixed, _ = data.trajectories(idx, 0, 3, 2, 0.1)
    assert torch.allclose(data.trajectories(idx, 0, 3, 2, (0.1, 0.1))[0], fixed)  # a range of one value is that speed
    clips = data.moving_mnist(range(3), speed=(0.07, 0.13))
    assert clips.shape == (3, 20, 1, 64, 64)


@pytest.mark.parametrize("speed", [(0.2, 0.1), (-0.1, 0.1), (0.1,), "fast", True])
def test_bad_speed_ranges(speed):
    with pytest.raises(ValueError, match="speed must be"):
        data.moving_mnist(range(2), speed=speed)
