"""The shared training loop: exact resume, NaN detection, exports verified by hash, the CLI."""

import json
import os

import pytest
import torch

from minivid import checkpoints, cli, image_diffusion
from minivid.train import TrainConfig, Trainer


def tiny_batches(step, batch_size, seed=0, device=None):
    g = torch.Generator().manual_seed(seed * 1000 + step)
    return torch.rand(batch_size, 1, 1, 16, 16, generator=g).to(device)


def make_model():
    torch.manual_seed(0)
    return image_diffusion.Model(image_diffusion.PRESETS["nano"])


def config(tmp_path, steps, **kw):
    return TrainConfig(steps=steps, batch_size=4, lr=1e-3, warmup_steps=2, out_dir=str(tmp_path), checkpoint_every=2,
                       progress=False, log_every=1, **kw)


def test_resume_is_exact(tmp_path):
    straight = Trainer(make_model(), config(tmp_path / "a", 4), tiny_batches)
    straight.fit()
    first = Trainer(make_model(), config(tmp_path / "b", 2), tiny_batches)
    first.fit()
    resumed = Trainer(make_model(), config(tmp_path / "b", 4), tiny_batches)  # finds checkpoint.pt at step 2
    assert resumed.step == 2
    resumed.fit()
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b)
    rows = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_loss_goes_down(tmp_path):
    trainer = Trainer(make_model(), config(tmp_path, 40), lambda s, b, seed=0, device=None: torch.zeros(b, 1, 1, 16, 16))
    history = trainer.fit()
    assert history[-1]["loss_smooth"] < history[0]["loss"]


def test_nan_is_reported_clearly(tmp_path):
    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def loss(self, batch):
            return self.w * float("nan")

    with pytest.raises(FloatingPointError, match="lower --lr"):
        Trainer(Broken(), config(tmp_path, 3), tiny_batches).fit()


def test_export_load_and_hash_check(tmp_path):
    model = make_model()
    info = checkpoints.export(model, "image", tmp_path / "m.pt", preset="nano", recipe="minivid train image --preset nano")
    assert info["sha256"] == checkpoints.sha256(tmp_path / "m.pt")
    loaded = checkpoints.load(tmp_path / "m.pt", family="image", expected_sha256=info["sha256"])
    x, t = torch.randn(1, 1, 1, 16, 16), torch.tensor([100])
    with torch.no_grad():  # weights are stored in fp16
        assert torch.allclose(loaded(x, t), model.eval()(x, t), atol=2e-2)
    with pytest.raises(RuntimeError, match="SHA-256"):
        checkpoints.load(tmp_path / "m.pt", expected_sha256="0" * 64)
    with pytest.raises(ValueError, match="not 'diffusion'"):
        checkpoints.load(tmp_path / "m.pt", family="diffusion")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="could not read"):
        checkpoints.load(tmp_path / "junk.pt")


def test_load_export_and_record_metrics(tmp_path):
    model = make_model()
    path = tmp_path / "m.pt"
    info = checkpoints.export(model, "image", path, preset="nano", metrics={"training": {"steps": 3}})
    loaded, manifest = checkpoints.load_export(path)
    assert manifest == info and loaded.family == model.family
    checkpoints.record_metrics(path, protocol={"mse": 1.0})
    checkpoints.record_metrics(path, schedules=[1, 2], protocol={"mse": 2.0})  # adds to, and replaces, what is there
    stored = checkpoints.load_export(path)[1]
    assert stored["metrics"] == {"training": {"steps": 3}, "protocol": {"mse": 2.0}, "schedules": [1, 2]}
    assert stored["sha256"] == checkpoints.sha256(path)  # the weights file is untouched
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(RuntimeError, match="SHA-256"):
        checkpoints.load_export(path)


def test_atomic_save_leaves_no_partial_file(tmp_path):
    old = os.umask(0o022)
    try:
        checkpoints.atomic_save({"a": torch.ones(2)}, tmp_path / "c.pt")
    finally:
        os.umask(old)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o644  # the usual permissions, not mkstemp's 0600


def test_cli_help_and_errors(capsys):
    assert cli.main([]) == 0
    assert "data" in capsys.readouterr().out
    assert cli.main(["train", "diffusion", "--preset", "huge", "--steps", "1"]) == 2
    assert "expected one of" in capsys.readouterr().err


def test_cli_data_writes_gif(tmp_path, capsys):
    assert cli.main(["data", "--out", str(tmp_path / "s.gif"), "--num", "2"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "s.gif").stat().st_size > 0 and "4,000 real MNIST digits" in out


def test_cli_train_and_sample(tmp_path):
    export = tmp_path / "d.pt"
    assert cli.main(["train", "diffusion", "--preset", "nano", "--steps", "2", "--batch-size", "1", "--device", "cpu",
                     "--out", str(tmp_path / "run"), "--export", str(export)]) == 0
    manifest = json.loads(export.with_suffix(".json").read_text())
    assert manifest["recipe"].startswith("minivid train diffusion --preset nano") and manifest["metrics"]["training"]["steps"] == 2
    assert cli.main(["sample", "diffusion", "--checkpoint", str(export), "--num", "1", "--steps", "1",
                     "--num-frames", "2", "--out", str(tmp_path / "s.gif")]) == 0
    assert (tmp_path / "s.gif").exists()


def test_batch_is_the_whole_jobs_and_must_divide(tmp_path, monkeypatch):
    from minivid import train

    monkeypatch.setattr(train, "_distributed_setup", lambda device: (1, 2))  # rank 1 of 2, without a process group
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda module, **kw: module)
    trainer = Trainer(make_model(), config(tmp_path, 2), tiny_batches)
    assert trainer.local_batch == 2
    seen = []
    trainer.make_batch = lambda step, b, seed, device: seen.append((step, b)) or tiny_batches(step, b, seed, device)
    trainer.train_step()
    assert seen == [(1, 2)]  # batch 1 of size 2 = clips 2..3 of step 0's clips 0..3: rank 1's half
    monkeypatch.setattr(train, "_distributed_setup", lambda device: (0, 3))
    with pytest.raises(ValueError, match="multiple of 3"):
        Trainer(make_model(), config(tmp_path / "b", 2), tiny_batches)


def test_noise_draws_are_seeded_per_step():
    from minivid.train import step_seed

    assert step_seed(0, 5, 0) == step_seed(0, 5, 0)
    assert len({step_seed(0, 5, 0), step_seed(0, 6, 0), step_seed(0, 5, 1), step_seed(1, 5, 0)}) == 4


def test_time_budget_fixes_the_step_count(tmp_path):
    trainer = Trainer(make_model(), config(tmp_path, 10**9, minutes=0.0), tiny_batches)
    trainer.fit()  # no time at all: it stops once the rate is known, and the schedule ends there
    assert trainer.step == trainer.steps == 40 and trainer.planned
    resumed = Trainer(make_model(), config(tmp_path, 10**9, minutes=0.0), tiny_batches)
    assert resumed.steps == 40 and resumed.planned  # the fixed schedule travels in the checkpoint


def test_compile_on_cpu_without_a_compiler_says_so(tmp_path, monkeypatch):
    from minivid import train

    monkeypatch.setattr(train.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        Trainer(make_model(), config(tmp_path, 2, compile=True), tiny_batches)
    assert Trainer(make_model(), config(tmp_path / "b", 2), tiny_batches).compile is False  # the CPU default


def test_resume_refuses_another_batch_size(tmp_path):
    Trainer(make_model(), config(tmp_path, 2), tiny_batches).fit()
    with pytest.raises(ValueError, match="batch_size 4"):
        Trainer(make_model(), TrainConfig(steps=4, batch_size=8, out_dir=str(tmp_path), progress=False), tiny_batches)


def test_cli_train_speed_range_and_overrides(tmp_path):
    export = tmp_path / "d.pt"
    assert cli.main(["train", "diffusion", "--preset", "nano", "--steps", "1", "--batch-size", "1", "--device", "cpu",
                     "--speed", "0.07,0.13", "--set", "spacetime=True", "--out", str(tmp_path / "run"),
                     "--export", str(export)]) == 0
    manifest = json.loads(export.with_suffix(".json").read_text())
    assert manifest["metrics"]["training"]["speed"] == [0.07, 0.13]
    assert checkpoints.load(export).config.spacetime is True
    with pytest.raises(SystemExit):
        cli.main(["train", "diffusion", "--speed", "0.2,0.1"])


def test_cli_evaluate_records_into_the_manifest(tmp_path, capsys):
    export = tmp_path / "d.pt"
    assert cli.main(["train", "diffusion", "--preset", "nano", "--steps", "1", "--batch-size", "1", "--device", "cpu",
                     "--out", str(tmp_path / "run"), "--export", str(export)]) == 0
    args = ["evaluate", str(export), "--clips", "2", "--batch-size", "2", "--device", "cpu", "--kwargs", '{"steps": 1}']
    assert cli.main([*args, "--speeds", "0.05", "--samples", "2"]) == 0
    metrics_ = json.loads(export.with_suffix(".json").read_text())["metrics"]
    assert metrics_["protocol"]["clips"] == 2 and metrics_["protocol"]["generate_kwargs"] == {"steps": 1}
    assert set(metrics_["speeds"]) == {"0.1", "0.05"} and metrics_["samples"]["samples"] == 2
    assert metrics_["speeds"]["0.1"]["mse"] == metrics_["protocol"]["mse"]
    assert checkpoints.load_export(export)[1]["sha256"] == checkpoints.sha256(export)  # weights untouched
    assert cli.main([*args[:-1], '{"steps": 2}', "--name", "two", "--speeds", "0.05", "--samples", "2"]) == 0
    named = json.loads(export.with_suffix(".json").read_text())["metrics"]
    assert named["two"]["generate_kwargs"] == {"steps": 2} and set(named["speeds_two"]) == {"0.1", "0.05"}
    assert named["speeds_two"]["0.1"]["mse"] == named["two"]["mse"] and named["samples_two"]["samples"] == 2
    assert named["protocol"] == metrics_["protocol"] and named["speeds"] == metrics_["speeds"]  # the default's kept
    assert named["samples"] == metrics_["samples"]
    capsys.readouterr()
    assert cli.main([*args, "--speeds", "fast"]) == 2
    assert "--speeds expects numbers" in capsys.readouterr().err
    assert cli.main([*args, "--schedules"]) == 2
    assert "for hybrid models" in capsys.readouterr().err


def test_cli_recipe_prints_the_manifest_commands(capsys):
    assert cli.main(["recipe", "hybrid"]) == 0
    out = capsys.readouterr().out.splitlines()
    steps = checkpoints.manifest("hybrid")["recipe_steps"]
    assert len([line for line in out if not line.startswith("#")]) == len(steps)
    assert out[-1].startswith(steps[-1])
    assert cli.main(["recipe", "student"]) == 0  # its teachers are named by stage, and the note says so
    out = capsys.readouterr().out
    assert "runs/stage16/diffusion.pt" in out and f"# {checkpoints.manifest('student')['recipe_note']}" in out
    assert cli.main(["recipe", "nothing"]) == 2
