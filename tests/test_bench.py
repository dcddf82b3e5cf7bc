"""`minivid bench`: one table for every method, also as JSON and CSV."""

import csv
import dataclasses
import json

import pytest

from minivid import bench, cli


def test_bench_baselines_table_json_csv(tmp_path, capsys):
    assert cli.main(["bench", "--num-clips", "4", "--methods", "copy last frame,black frames",
                     "--json", str(tmp_path / "b.json"), "--csv", str(tmp_path / "b.csv")]) == 0
    table = capsys.readouterr().out
    assert "copy last frame" in table and "| MSE" not in table.splitlines()[0][:3]
    rows = json.loads((tmp_path / "b.json").read_text())
    assert [r["method"] for r in rows] == ["copy last frame", "black frames"]
    assert len(rows[0]["mse_per_frame"]) == 10 and rows[0]["network_evals_per_clip"] == 0
    with open(tmp_path / "b.csv") as f:
        assert len(list(csv.DictReader(f))) == 2


def test_bench_counts_network_evaluations():
    import torch

    from minivid import video_diffusion

    model = video_diffusion.Model(video_diffusion.PRESETS["nano"])
    assert bench.network_evaluations(model, {"steps": 3}) == 3
    assert bench.network_evaluations(model, {"steps": 3, "guidance": 1.0}) == 6  # CFG: two calls per step
    # a model with a deterministic predictor calls it once per prediction (twice with CFG), as it says it does
    with_guess = video_diffusion.Model(dataclasses.replace(video_diffusion.PRESETS["nano"], predictor=8,
                                                           predictor_net="framestack"))
    for kwargs in ({"steps": 3}, {"steps": 3, "guidance": 1.0}):
        assert bench.network_evaluations(with_guess, kwargs) == with_guess.network_evaluations(10, 10, **kwargs)
    assert bench.network_evaluations(with_guess, {"steps": 3}) == 4  # too few steps below 0.3: from noise, + predictor
    assert bench.network_evaluations(with_guess, {"steps": 10}) == 4  # by default from the guess: 3 of 10 + predictor
    assert bench.network_evaluations(with_guess, {"steps": 10, "start": 1.0}) == 11
    del torch


def test_bench_unknown_method():
    with pytest.raises(ValueError, match="expected some of"):
        bench.run(2, methods=["nope"])


def test_bench_lists_generators_only_and_counts_transformer_passes():
    import torch

    from minivid import autoregressive

    assert "vqvae" not in bench.generators() and "diffusion" in bench.generators()
    torch.manual_seed(0)
    model = autoregressive.Model(autoregressive.PRESETS["tiny"]).eval()
    # token by token with a KV cache: one pass reads the context, then one pass per token (64 a frame)
    assert bench.network_evaluations(model, {}) == 1 + 10 * 64
    # parallel: the context once, then per frame at most `iterations` passes and one to store the frame
    assert 1 + 10 <= bench.network_evaluations(model, {"decoding": "parallel", "iterations": 3}) <= 1 + 10 * (3 + 1)
    # diagonal: the context once, then one pass per step; frame t + 1 starts `lag` steps after frame t
    assert bench.network_evaluations(model, {"decoding": "diagonal", "lag": 16}) == 1 + 9 * 16 + 64


def test_bench_counts_calls_per_clip_over_several_batches(monkeypatch):
    monkeypatch.setattr(bench, "BATCH_SIZE", 1)  # two clips, two batches: the count is per batch, not summed
    from minivid import checkpoints

    (row,) = bench.run(2, methods=["diffusion"], generate_kwargs={"diffusion": {"steps": 2}}, progress=False)
    per_clip = checkpoints.pretrained("diffusion").network_evaluations(10, 10, steps=2)  # 2 steps from noise + predictor
    assert per_clip == 3 and row["network_evals_per_clip"] == per_clip and row["clips"] == 2
