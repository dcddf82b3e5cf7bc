"""Long rollouts and the error-accumulation viewer, driven in Python."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minivid import data, hybrid, metrics, rollouts
from minivid.widgets import ErrorAccumulation, ErrorAccumulationState


class Recorder:
    """A fake model: returns its context's last frame, and records how it was called."""

    def __init__(self):
        self.calls = []

    def generate(self, context, num_frames, seed=0, progress=True, temperature=1.0):
        self.calls.append((context.shape[1], num_frames, seed, temperature, float(context[:, -1].sum())))
        return context[:, -1:].repeat(1, num_frames, 1, 1, 1) * 0.5


def test_true_clip_extends_the_standard_test_clips():
    long = rollouts.true_clip(3, 50)
    assert long.shape == (1, 50, 1, 64, 64)
    assert torch.equal(long[:, :20], data.standard_test_set(4)[3:4])
    with pytest.raises(ValueError, match="clip index"):
        rollouts.true_clip(-1, 20)


def test_rollout_feeds_the_model_its_own_frames():
    model = Recorder()
    clip = rollouts.true_clip(0, 35)
    out = rollouts.rollout(model, clip[:, :10], 25, chunk=10, seed=7, temperature=0.5)
    assert out.shape == (1, 25, 1, 64, 64)
    assert [c[:4] for c in model.calls] == [(10, 10, 7, 0.5), (10, 10, 8, 0.5), (10, 5, 9, 0.5)]
    # the second chunk was conditioned on the model's output (half as bright), not on the truth
    assert model.calls[1][4] == pytest.approx(0.5 * model.calls[0][4], rel=1e-5)
    assert torch.allclose(out[0, -1], clip[0, 9] * 0.125)
    copy = rollouts.rollout(metrics.copy_last_frame, clip[:, :10], 12)  # plain functions work too
    assert torch.equal(copy, clip[:, 9:10].repeat(1, 12, 1, 1, 1))
    with pytest.raises(ValueError, match="horizon"):
        rollouts.rollout(model, clip[:, :10], 0)


def test_accumulation_measures():
    truth = rollouts.true_clip(1, 30)[:, 10:]
    perfect = rollouts.accumulation(truth, truth)
    assert perfect["mse"].shape == (20,) and float(perfect["mse"].abs().max()) == 0
    assert torch.allclose(perfect["ink_ratio"], torch.ones(20), atol=0.01)
    faded = rollouts.accumulation(truth * 0.5, truth)
    assert torch.allclose(faded["ink_ratio"], torch.full((20,), 0.5), atol=0.01)
    with pytest.raises(ValueError, match="same shape"):
        rollouts.ink_ratio(truth[:, :3], truth)


def test_state_runs_each_method_once_per_setting_it_uses():
    torch.manual_seed(0)
    small = hybrid.Config(**{**hybrid.PRESETS["nano"].__dict__, "num_frames": 12, "max_context": 10})
    fake = Recorder()
    state = ErrorAccumulationState({"fake": fake, "hybrid": hybrid.Model(small), "copy": metrics.copy_last_frame})
    assert state.accepted("fake") == ["temperature"] and state.accepted("copy") == []
    assert state.accepted("hybrid") == ["steps", "context_noise", "schedule"]
    state.update(horizon=4, steps=1, clip=2)
    curves = state.curves()
    assert set(curves) == {"mse", "ink_ratio"} and curves["mse"]["hybrid"].shape == (4,)
    assert state.runs == 3 and state.done()
    state.update(temperature=0.7)  # only the method that takes a temperature runs again
    assert not state.done()
    state.run()
    assert state.runs == 4
    state.update(temperature=1.0)  # back to a cached setting
    assert state.done()
    assert bytes(state.figure_png()).startswith(b"\x89PNG")
    assert list(state.videos()) == ["truth", "fake", "hybrid", "copy"]
    with pytest.raises(ValueError, match="horizon"):
        state.update(horizon=0)
    with pytest.raises(ValueError, match="unknown setting"):
        state.update(top_p=0.9)
    with pytest.raises(ValueError, match="non-empty dict"):
        ErrorAccumulationState({})


def test_widget_callbacks():
    ex = ErrorAccumulation({"fake": Recorder(), "copy": metrics.copy_last_frame}, num_clips=2)
    assert bytes(ex.plot.value) == b""
    ex.horizon.value = 20
    ex.run.click()
    assert ex.state.runs == 2 and bytes(ex.plot.value).startswith(b"\x89PNG")
    ex.temperature.value = 0.5
    assert "press Roll out" in ex.status.value and ex.is_stale()
    ex.temperature.value = 1.0  # cached: redrawn at once
    assert ex.state.runs == 2 and "cached" in ex.status.value and not ex.is_stale()


def test_the_rollout_benchmark_runs_the_methods_asked_for(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_rollouts.py"
    for methods, said in (("hybrid,nope", "unknown: nope"), (" , ", "got none")):
        wrong = subprocess.run([sys.executable, str(script), "--methods", methods], capture_output=True, text=True, timeout=120)
        assert wrong.returncode == 2 and "--methods takes names from" in wrong.stderr and said in wrong.stderr
    out = tmp_path / "rollouts.json"
    done = subprocess.run([sys.executable, str(script), "--methods", "autoregressive,autoregressive", "--clips", "1",
                           "--horizon", "12", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())
    assert list(rows) == ["copy last frame", "black frames", "autoregressive"]
    assert len(rows["autoregressive"]["mse"]) == 12 and all(m >= 0 for m in rows["autoregressive"]["mse"])
    assert rows["black frames"]["ink_ratio"] == [0.0] * 12
