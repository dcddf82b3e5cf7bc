"""One training loop for every model in minivid (minGPT's `trainer.py`, grown a little).

It knows nothing of any model beyond ``loss = model.loss(batch)``. Around that it does what a
careful training run needs: AdamW with warm-up and cosine decay, an EMA copy of the weights (what
sampling uses), bf16 autocast on CUDA, gradient clipping, a `tqdm.auto` bar showing the loss,
periodic previews, NaN detection with a message that says what to try, and an atomic checkpoint
from which a run resumes exactly (same weights, same optimizer state, same data, same noise).

Data is made on the training device by ``make_batch(step, batch_size, seed, device)``: the Moving
MNIST generator is deterministic in (seed, step), so a resumed run sees the batches it would have.
The noise a step draws is seeded by (seed, step, rank), so it too is the same after a resume.

Under ``torchrun --nproc_per_node N`` it trains with PyTorch DDP: `batch_size` is the whole job's
batch, and rank r takes its r-th N-th share, so the clips of step s are the same for any N. Only
rank 0 writes files.

On CUDA the step is compiled by default (`torch.compile`: one graph, no host sync inside), the
optimizer is AdamW's fused kernel, and the loss is read back to the host only every `log_every`
steps, so the GPU never waits for Python. The model code is the same readable code either way.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
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
    batch_size: int = 32  # clips per step for the whole job; under DDP each of N GPUs takes batch_size / N
    lr: float = 2e-4  # AdamW peak learning rate; small video nets train stably here
    weight_decay: float = 0.0  # tiny nets on endless synthetic data do not overfit
    warmup_steps: int = 200  # linear warm-up avoids early blow-ups with attention layers
    min_lr_ratio: float = 0.1  # cosine decay ends at this fraction of lr
    grad_clip: float = 1.0  # clip the global gradient norm (diffusion losses spike now and then)
    ema_decay: float = 0.999  # EMA of weights for sampling (DDPM/DiT practice); warmed up early on
    seed: int = 0  # seeds the data stream, the weights' noise draws and the model's init
    device: str = "cpu"
    compile: bool | None = None  # torch.compile the loss; None: on for CUDA (~2x faster), off on the CPU
    bf16: bool = True  # autocast to bfloat16 on CUDA (ignored on CPU)
    out_dir: str | None = None  # where checkpoint.pt, log.jsonl and previews go; None keeps nothing
    checkpoint_every: int = 1_000  # steps between atomic checkpoints (and one at the end)
    preview_every: int = 0  # steps between previews (0: none); needs a preview function
    log_every: int = 50  # steps between log lines (and between the loss's reads back to the host)
    max_minutes: float | None = None  # stop early (and checkpoint) after this much wall time
    minutes: float | None = None  # a time budget instead of `steps`: the step count is fixed after 30 timed
    # steps, so the learning-rate schedule ends on time; the export records it, and --steps N repeats the run
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
        if self.device.type == "cuda" and self.device.index is None and self.world > 1:
            self.device = torch.device("cuda", torch.cuda.current_device())
        if config.batch_size % self.world:
            raise ValueError(f"batch_size {config.batch_size} is the whole job's batch and must divide evenly among "
                             f"{self.world} processes; use a multiple of {self.world}")
        self.local_batch = config.batch_size // self.world
        self.compile = _resolve_compile(config.compile, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self.model = model.to(self.device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.opt = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=config.lr,
            weight_decay=config.weight_decay,
            betas=(0.9, 0.99),
            fused=self.device.type == "cuda",  # one kernel for every parameter instead of several per tensor
        )
        self.clip_groups = clip_groups(self.model)
        self.step = 0
        self.steps = config.steps  # the schedule's length; a `minutes` budget fixes it early in fit()
        self.planned = False  # whether that has happened
        self.history: list[dict] = []
        self.train_model = LossOf(self.model)
        if self.world > 1:
            # one gradient bucket: a small model's gradients all-reduce in one call, and the compiled
            # step stays one graph
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.train_model, bucket_cap_mb=1024)
        if self.compile:
            self.train_model = torch.compile(self.train_model)
        self._smooth = None  # on-device running loss; read back every log_every steps
        self._finite = None  # on-device flag: every loss since the last read was finite
        self.out_dir = Path(config.out_dir) if config.out_dir else None
        if self.out_dir is not None and (self.out_dir / "checkpoint.pt").exists():
            self.resume(self.out_dir / "checkpoint.pt")

    # -- schedule and EMA ------------------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        frac = (step - c.warmup_steps) / max(1, self.steps - c.warmup_steps)
        return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    @torch.no_grad()
    def update_ema(self):
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        torch._foreach_lerp_(list(self.ema.parameters()), [p.detach() for p in self.model.parameters()], 1 - decay)
        for e, b in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(b)

    def ema_model(self) -> torch.nn.Module:
        return self.ema

    # -- one step --------------------------------------------------------------------------------

    def train_step(self) -> torch.Tensor:
        """One optimizer step; returns the loss as a 0-d tensor on the device (no host sync)."""
        c = self.config
        torch.manual_seed(step_seed(c.seed, self.step, self.rank))  # this step's noise, the same after a resume
        batch = self.make_batch(self.step * self.world + self.rank, self.local_batch, c.seed, self.device)
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.train_model.train()
        use_bf16 = c.bf16 and self.device.type == "cuda"
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = self.train_model(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.grad_clip:
            for group in self.clip_groups:
                torch.nn.utils.clip_grad_norm_(group, c.grad_clip)
        self.opt.step()
        self.update_ema()
        loss = loss.detach().float()
        finite = torch.isfinite(loss)
        self._finite = finite if self._finite is None else self._finite & finite
        self._smooth = loss if self._smooth is None else 0.98 * self._smooth + 0.02 * loss
        self.step += 1
        return loss

    def check_finite(self):
        """Raise if any loss since the last check was NaN or infinite (one host sync)."""
        if self._finite is not None and not bool(self._finite):
            raise FloatingPointError(
                f"the loss became NaN or infinite before step {self.step} (lr {self.lr_at(self.step - 1):.2e}). "
                "Try a lower --lr, a smaller grad_clip, or bf16=False; the last checkpoint is intact."
            )
        self._finite = None

    def fit(self) -> list[dict]:
        c = self.config
        start, start_step = time.perf_counter(), self.step
        plan = c.minutes is not None and not self.planned  # fix the step count from the measured rate
        bar = tqdm(total=self.steps, initial=self.step, desc="train", disable=not c.progress or self.rank != 0)
        while self.step < self.steps:
            loss = self.train_step()
            bar.update(1)
            if plan and self.step == start_step + 10:  # compilation and warm-up are behind us: start the clock
                _sync(self.device)
                clock = time.perf_counter()
            if plan and self.step == start_step + 40:
                self.steps = self._planned_steps(c.minutes * 60 - (time.perf_counter() - start), 30, clock)
                self.planned = True
                bar.total = self.steps
                bar.refresh()
            if self.step % c.log_every == 0 or self.step == self.steps:
                self.check_finite()
                smooth = float(self._smooth)
                bar.set_postfix(loss=f"{smooth:.4f}")
                seconds = time.perf_counter() - start
                self._log({"step": self.step, "loss": float(loss), "loss_smooth": smooth, "lr": self.lr_at(self.step - 1),
                           "seconds": seconds, "clips_per_second": (self.step - start_step) * c.batch_size / max(seconds, 1e-9)})
            if self.out_dir is not None and c.preview_every and self.preview and self.step % c.preview_every == 0:
                self._preview()
            if self.out_dir is not None and self.step % c.checkpoint_every == 0:
                self.save()
            if c.max_minutes is not None and self._all_agree(time.perf_counter() - start > 60 * c.max_minutes):
                bar.write(f"stopping at step {self.step}: max_minutes={c.max_minutes} reached")
                break
        bar.close()
        if c.minutes is not None:  # a budgeted run that stopped early records the steps it made
            self.steps = min(self.steps, self.step)
        if self.out_dir is not None:
            self.save()
        self.seconds = time.perf_counter() - start
        self.clips_per_second = (self.step - start_step) * c.batch_size / max(self.seconds, 1e-9)  # the whole job's
        return self.history

    def _all_agree(self, flag: bool) -> bool:
        """True if `flag` is true on any rank, so that every rank stops at the same step (no hang in DDP)."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value)

    def _planned_steps(self, seconds_left: float, timed_steps: int, clock: float) -> int:
        """How many steps fit in the time left, at the rate of the last `timed_steps` (agreed by all ranks)."""
        _sync(self.device)
        rate = timed_steps / (time.perf_counter() - clock)
        steps = torch.tensor([self.step + max(0, int(0.98 * seconds_left * rate))], device=self.device)
        if self.world > 1:  # every rank must stop at the same step
            import torch.distributed as dist

            dist.all_reduce(steps, op=dist.ReduceOp.MIN)
        if self.rank == 0 and self.config.progress:
            print(f"{rate:.2f} steps/s: {int(steps)} steps fit in the {self.config.minutes} minute budget")
        return int(steps)

    def close(self, wait: bool = True):
        """End the process group of a `torchrun` job, so every rank exits; a no-op otherwise.

        wait: meet the other ranks first (after a finished run); False after an error, when they may never come.
        """
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                if wait:
                    dist.barrier()
                dist.destroy_process_group()

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
            "world_size": self.world,
            "planned_steps": self.steps,
        }
        try:
            state["config"] = checkpoints.config_dict(self.model)
        except TypeError:
            pass
        family = getattr(self.model, "family", None)
        if family is not None:
            state["family"] = family
        return state

    def save(self):
        self.check_finite()  # never overwrite a good checkpoint with NaN weights
        if self.rank == 0:
            checkpoints.atomic_save(self.state(), self.out_dir / "checkpoint.pt")

    def resume(self, path):
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        if self.config.minutes is not None and "planned_steps" in state:  # keep the schedule the budget fixed
            self.steps, self.planned = int(state["planned_steps"]), True
        saved = state.get("train_config", {})
        if saved.get("batch_size", self.config.batch_size) != self.config.batch_size:
            raise ValueError(f"{path} was trained with batch_size {saved['batch_size']}, this run asks for "
                             f"{self.config.batch_size}; resume with the same batch size or use a new --out folder")
        world = int(state.get("world_size", 1))
        if self.rank == 0 and world != self.world:
            print(f"note: {path} was written by a job of {world} process(es), this one has {self.world}: the clips "
                  "of every step are the same, the noise draws are not")
        if self.rank == 0 and self.config.progress:
            print(f"resumed from {path} at step {self.step}")


class LossOf(torch.nn.Module):
    """`model.loss` as a module's forward, so DDP and torch.compile can wrap the whole loss."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clip_groups(model: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
    """The parameters whose gradient norm is clipped together: each training-only submodule on its own (e.g. the
    student's fake score model, `model.training_only`), then the model's own; one group for most models."""
    parts = [getattr(model, name) for name in getattr(model, "training_only", ())]
    groups = [list(part.parameters()) for part in parts if part is not None]
    apart = {id(p) for group in groups for p in group}
    return [*groups, [p for p in model.parameters() if id(p) not in apart]]


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one step's random draws on one rank: a pure function, so resumed runs repeat them."""
    return (int(seed) * 1_000_003 + int(step)) * 1_009 + int(rank)


def _resolve_compile(compile: bool | None, device: torch.device) -> bool:
    """None means: compile on CUDA. Compiling on the CPU needs a C++ compiler; say so clearly if there is none."""
    if compile is None:
        return device.type == "cuda"
    if compile and device.type == "cpu" and not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        raise RuntimeError("--compile on the CPU needs a C++ compiler (g++ or clang++) on PATH; install one, "
                           "or train without --compile")
    return bool(compile)


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
