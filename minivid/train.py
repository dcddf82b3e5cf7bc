"""One training loop for every model in minivid (minGPT's `trainer.py`, grown a little).

It knows nothing of any model beyond ``loss = model.loss(batch)``. Around that it does what a
careful training run needs: AdamW with warm-up and cosine decay, an EMA copy of the weights (what
sampling uses), bf16 autocast on CUDA, gradient clipping, a `tqdm.auto` bar showing the loss,
periodic previews, NaN detection with a message that says what to try, and an atomic checkpoint
from which a run resumes exactly (same weights, same optimizer state, same data, same noise).

Data is made on the training device by ``make_batch(step, batch_size, seed, device)``: the Moving
MNIST generator is deterministic in (seed, step), so a resumed run sees the batches it would have.

Under ``torchrun --nproc_per_node N`` it trains with PyTorch DDP: rank r draws batch
``step * N + r`` of the same stream, and only rank 0 writes files.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from minivid import checkpoints


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2_000  # optimizer steps; a resumed run continues up to this number
    batch_size: int = 32  # clips per step (per GPU under DDP)
    lr: float = 2e-4  # AdamW peak learning rate; small video nets train stably here
    weight_decay: float = 0.0  # tiny nets on endless synthetic data do not overfit
    warmup_steps: int = 200  # linear warm-up avoids early blow-ups with attention layers
    min_lr_ratio: float = 0.1  # cosine decay ends at this fraction of lr
    grad_clip: float = 1.0  # clip the global gradient norm (diffusion losses spike now and then)
    ema_decay: float = 0.999  # EMA of weights for sampling (DDPM/DiT practice); warmed up early on
    seed: int = 0  # seeds the data stream, the weights' noise draws and the model's init
    device: str = "cpu"
    compile: bool = False  # torch.compile the model (worth it on GPU for long runs)
    bf16: bool = True  # autocast to bfloat16 on CUDA (ignored on CPU)
    out_dir: str | None = None  # where checkpoint.pt, log.jsonl and previews go; None keeps nothing
    checkpoint_every: int = 1_000  # steps between atomic checkpoints (and one at the end)
    preview_every: int = 0  # steps between previews (0: none); needs a preview function
    log_every: int = 50  # steps between log lines in log.jsonl
    max_minutes: float | None = None  # stop early (and checkpoint) after this much wall time
    progress: bool = True  # show the tqdm bar


class Trainer:
    """Train `model` on batches from `make_batch`; ``fit()`` returns the loss history."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        make_batch: Callable,
        preview: Callable | None = None,
    ):
        self.config = config
        self.make_batch = make_batch
        self.preview = preview
        self.device = torch.device(config.device)
        self.rank, self.world = _distributed_setup(self.device)
        self.model = model.to(self.device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.opt = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=config.lr,
            weight_decay=config.weight_decay,
            betas=(0.9, 0.99),
        )
        self.step = 0
        self.history: list[dict] = []
        self.train_model = LossOf(self.model)
        if self.world > 1:
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.train_model)
        if config.compile:
            self.train_model = torch.compile(self.train_model)
        self.out_dir = Path(config.out_dir) if config.out_dir else None
        if self.out_dir is not None and (self.out_dir / "checkpoint.pt").exists():
            self.resume(self.out_dir / "checkpoint.pt")

    # -- schedule and EMA ------------------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        frac = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
        return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    @torch.no_grad()
    def update_ema(self):
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1 - decay)
        for e, b in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(b)

    def ema_model(self) -> torch.nn.Module:
        return self.ema

    # -- one step --------------------------------------------------------------------------------

    def train_step(self) -> float:
        c = self.config
        batch = self.make_batch(self.step * self.world + self.rank, c.batch_size, c.seed, self.device)
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.train_model.train()
        use_bf16 = c.bf16 and self.device.type == "cuda"
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = self.train_model(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the loss became {loss.item()} at step {self.step} (lr {self.lr_at(self.step):.2e}). "
                "Try a lower --lr, a smaller grad_clip, or bf16=False; the last checkpoint is intact."
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.opt.step()
        self.update_ema()
        self.step += 1
        return loss.item()

    def fit(self) -> list[dict]:
        c = self.config
        if self.step == 0:
            torch.manual_seed(c.seed + self.rank)
        start = time.perf_counter()
        bar = tqdm(total=c.steps, initial=self.step, desc="train", disable=not c.progress or self.rank != 0)
        smooth = None
        while self.step < c.steps:
            loss = self.train_step()
            smooth = loss if smooth is None else 0.98 * smooth + 0.02 * loss
            bar.update(1)
            bar.set_postfix(loss=f"{smooth:.4f}")
            if self.step % c.log_every == 0 or self.step == c.steps:
                self._log({"step": self.step, "loss": loss, "loss_smooth": smooth, "lr": self.lr_at(self.step - 1),
                           "seconds": time.perf_counter() - start})
            if self.out_dir is not None and c.preview_every and self.preview and self.step % c.preview_every == 0:
                self._preview()
            if self.out_dir is not None and self.step % c.checkpoint_every == 0:
                self.save()
            if c.max_minutes is not None and time.perf_counter() - start > 60 * c.max_minutes:
                bar.write(f"stopping at step {self.step}: max_minutes={c.max_minutes} reached")
                break
        bar.close()
        if self.out_dir is not None:
            self.save()
        return self.history

    # -- files -----------------------------------------------------------------------------------

    def _log(self, row: dict):
        self.history.append(row)
        if self.out_dir is not None and self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def _preview(self):
        if self.rank != 0:
            return
        from minivid import viz

        video = self.preview(self.ema, self.step)
        viz.save_video(video.detach().float().cpu(), self.out_dir / f"preview_{self.step:07d}.gif")

    def state(self) -> dict:
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.opt.state_dict(),
            "train_config": asdict(self.config),
            "history": self.history,
            "rng_cpu": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        try:
            state["config"] = checkpoints.config_dict(self.model)
        except TypeError:
            pass
        family = getattr(self.model, "family", None)
        if family is not None:
            state["family"] = family
        return state

    def save(self):
        if self.rank == 0:
            checkpoints.atomic_save(self.state(), self.out_dir / "checkpoint.pt")

    def resume(self, path):
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        torch.set_rng_state(state["rng_cpu"].cpu())
        if "rng_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])
        if self.rank == 0 and self.config.progress:
            print(f"resumed from {path} at step {self.step}")


class LossOf(torch.nn.Module):
    """`model.loss` as a module's forward, so DDP and torch.compile can wrap the whole loss."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)


def _distributed_setup(device: torch.device) -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), world
