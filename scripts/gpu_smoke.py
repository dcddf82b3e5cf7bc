"""Check minivid's data path and training loop on a GPU: CPU/CUDA parity, generation throughput, bf16 training."""

import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time

import torch

from minivid import data
from minivid.train import TrainConfig, Trainer


def throughput(device, batch=256, repeats=10):
    times = []
    for r in range(repeats + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        data.training_batch(r, batch, device=device)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times[2:])


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    channels: int = 16  # enough to see the loss fall


class Tiny(torch.nn.Module):
    family = "smoke"

    def __init__(self, config=TinyConfig()):
        super().__init__()
        self.config = config
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, config.channels, 3, padding=1), torch.nn.GELU(),
                                       torch.nn.Conv2d(config.channels, 1, 3, padding=1))

    def loss(self, batch):
        x = batch[:, :-1].flatten(0, 1)
        y = batch[:, 1:].flatten(0, 1)
        return torch.nn.functional.mse_loss(self.net(x), y)


def main():
    out = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    idx = torch.arange(0, 4096, 37)
    cpu = data.moving_mnist(idx, seed=3)
    if torch.cuda.is_available():
        gpu = data.moving_mnist(idx.cuda(), seed=3, device="cuda").cpu()
        out["cpu_cuda_identical"] = bool(torch.equal(cpu, gpu))
        out["clips_per_s_cuda_b256"] = throughput("cuda")
        out["device_name"] = torch.cuda.get_device_name()
    torch.set_num_threads(1)
    out["clips_per_s_cpu1_b64"] = throughput("cpu", batch=64, repeats=5)
    torch.set_num_threads(os.cpu_count())
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(Tiny(), TrainConfig(steps=200, batch_size=64, lr=1e-3, device=dev, out_dir=tmp, progress=False), data.training_batch)
        hist = tr.fit()
        out["loss_first_last"] = [hist[0]["loss"], hist[-1]["loss"]]
        out["trainer_ok"] = hist[-1]["loss"] < hist[0]["loss"]
    print(json.dumps(out, indent=1))
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
