"""VQ autoregressive video: a frozen VQ-VAE tokenizer and a causal transformer over its tokens.

Training (`loss`): tokenize each clip with the frozen tokenizer (`minivid/models/vqvae.py`), read the
tokens in raster order and learn to predict each from those before it (cross-entropy; GPT). With
`diagonal_lags`, some steps instead replay the order diagonal decoding (below) draws tokens in.

Sampling (`generate`): tokenize the context, then draw the future tokens one at a time from the
transformer's distribution, reshaped by temperature, top-k and top-p (nucleus; Holtzman et al.
2020), reusing keys and values through a KV cache. Draws use the Gumbel-max trick with noise fixed
per position, so for a given seed a token depends only on the logits at its position; that makes the
cached, uncached and parallel decoders give the same tokens when they agree on the logits.

Parallel decoding is Jacobi decoding within a frame (Santilli et al. 2023; Song et al. 2021): guess
a whole frame (the previous frame's tokens), run the frame's 64 positions through the network at
once, replace every guess by its draw, and repeat. After k iterations at least the first k tokens
are exactly what token-by-token decoding would give; after 64 all are. Frames barely change between
steps, so a few iterations get most tokens right at a fraction of the cost.

Diagonal decoding (Ye et al. 2025, "Fast Autoregressive Video Generation with Diagonal Decoding")
draws each token once, like sequential decoding, but several per network pass: frame t + 1 starts
`lag` steps after frame t, so its first tokens are drawn while frame t's later ones still are, and
with `row_lag` < 8 the rows of a frame overlap the same way. `diagonal_steps` gives the step of
every token; `Model._generate_diagonal` explains what is approximate about it.

Rollouts past the training window (20 frames) slide it: the oldest frame is dropped and the cache is
rebuilt from the frames kept.

A guide (optional, `Config.predictor` > 0): a frozen deterministic predictor, taken from a diffusion model or
the hybrid (`--predictor-from`; the shipped model's is the hybrid's), guesses the frames a window has yet to
make from the frames it opens with; the tokenizer's encoder turns each guessed frame into one vector per token,
and the position that predicts a token reads its cell's vector, through a linear map that starts at zero
(`Model.guide`; `Model.guess` shows the guessed frames). The guess reads only the frames already there, so the
model stays causal; a window that slides makes a new guess.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from tqdm.auto import tqdm

from minivid.metrics import validate_video
from minivid.models import framestack
from minivid.models import transformer as tfm
from minivid.models import vqvae
from minivid.models.framestack import FrameStackPredictor

DECODINGS = ("sequential", "parallel", "diagonal")


@dataclass(frozen=True)
class Config:
    tokenizer: vqvae.Config = field(default_factory=vqvae.Config)  # the frozen frame tokenizer
    transformer: tfm.Config = field(default_factory=tfm.Config)  # the causal model over its tokens
    token_noise: float = 0.0  # training only: input tokens replaced at random, at a rate drawn per clip from
    # [0, token_noise): teacher forcing then also teaches continuing from imperfect tokens (exposure bias)
    own_tokens: float = 0.0  # training only: input tokens replaced by the model's own draws (parallel scheduled
    # sampling), at a rate drawn per clip from [0, own_tokens): the errors it will read when it generates
    diagonal_lags: tuple = ()  # training only: diagonal decoding's lags (row_lag 8) to train for, e.g. (32, 16, 8)
    diagonal_rate: float = 0.5  # training only: the share of steps that replay one of them (`diagonal_order`)
    predictor: int = 0  # 0: none; else the width of a frozen frame-stack predictor whose guess guides the tokens
    predictor_context: int = 10  # the most given frames it reads, the latest: its source's max_context (`build`)
    predictor_hidden: int = framestack.HIDDEN  # the predictor's channels per frame and translator blocks: its
    predictor_blocks: int = framestack.BLOCKS  # source's (`build`)


PRESETS = {
    "tiny": Config(vqvae.PRESETS["tiny"], tfm.Config(vocab_size=256, layers=4, width=128, heads=4)),  # 0.9 M + tokenizer
    "small": Config(),  # 2.9 M transformer + 1.8 M tokenizer, the shipped one
}


# --------------------------------------------------------------------------------------------
# sampling helpers (pure functions)
# --------------------------------------------------------------------------------------------


def replaced_at_random(inputs: torch.Tensor, others: torch.Tensor, max_rate: float) -> torch.Tensor:
    """`inputs` (b, n) with each position but the first (the start token) taken from `others` at a rate
    drawn per clip from [0, max_rate): the training-time corruptions `token_noise` and `own_tokens`."""
    rate = max_rate * torch.rand(inputs.shape[0], 1, device=inputs.device)  # (b, 1)
    swap = torch.rand(inputs.shape, device=inputs.device) < rate
    swap[:, 0] = False  # the start token stays
    return torch.where(swap, others, inputs)


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Logits (..., vocab) scaled by 1/temperature, with tokens outside top-k / the top-p nucleus set to -inf."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and (int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(int(top_k), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p  # tokens after the nucleus is full; the top one always stays
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def draw(logits: torch.Tensor, gumbel: torch.Tensor | None) -> torch.Tensor:
    """Gumbel-max sampling: argmax(logits + g) is a draw from softmax(logits); g None means greedy."""
    return (logits if gumbel is None else logits + gumbel).argmax(-1)


def gumbel_noise(shape, generator: torch.Generator, device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device).clamp_(1e-9, 1 - 1e-9)
    return -torch.log(-torch.log(u))


def diagonal_steps(num_frames: int, grid: int, lag: int, row_lag: int) -> torch.Tensor:
    """The decoding step of every token, (num_frames, grid * grid) in raster order within a frame.

    Token (frame f, row r, column c) is drawn at step f * lag + r * row_lag + c: along a row one token
    a step, row r + 1 starts `row_lag` steps after row r, frame f + 1 starts `lag` steps after frame f.
    Tokens with the same step lie on one spatio-temporal diagonal and share one network pass.
    row_lag = grid and lag = grid * grid is raster order, one token a step (sequential decoding);
    row_lag = 1 draws a frame along its anti-diagonals (r + c constant) in 2 * grid - 1 steps.
    """
    f, r, c = torch.meshgrid(torch.arange(num_frames), torch.arange(grid), torch.arange(grid), indexing="ij")
    return rearrange(f * lag + r * row_lag + c, "t gh gw -> t (gh gw)")


def diagonal_order(num_context: int, num_frames: int, grid: int, lag: int, row_lag: int | None = None):
    """Diagonal decoding replayed in one teacher-forced pass: (source (N,), mask (N, N)), N the tokens of
    num_context + num_frames frames in raster order.

    mask[p, q] is True where position p attends to position q when `Model._generate_diagonal` draws the
    last num_frames frames after the context: q is not later than p and was drawn no later (the context is
    read first, in raster order; tokens of one step see each other's keys by position, as in that loop).
    source[p] is the position whose token is p's input: p - 1 where that token is drawn before p's step,
    else the stand-in the loop uses, the newest drawn token at p - 1's cell in an earlier frame; -1 is the
    start token. lag and row_lag (default: grid, rows in raster order) as `generate` accepts them; one
    window, no slide. Training on it (`Config.diagonal_lags`) is the short fine-tuning on the diagonal
    order that Ye et al. propose for models trained in raster order.
    """
    row_lag = grid if row_lag is None else row_lag
    n, frames = grid * grid, num_context + num_frames
    read = torch.arange(num_context * n) - num_context * n  # the context, read in raster order before the first step
    step = torch.cat([read, diagonal_steps(num_frames, grid, lag, row_lag).flatten()])
    pos = torch.arange(frames * n)
    mask = (pos[None, :] <= pos[:, None]) & (step[None, :] <= step[:, None])
    source = pos - 1
    for p in (pos[1:][step[:-1] >= step[1:]]).tolist():  # the token before p is not drawn yet: a stand-in
        frame, cell = divmod(p - 1, n)
        at_cell = step.view(frames, n)[:frame, cell]  # that cell in the earlier frames
        drawn = (at_cell < step[p]).nonzero()
        source[p] = int(drawn[-1]) * n + cell if len(drawn) else -1
    return source, mask


def steps_per_frame(grid: int, row_lag: int) -> int:
    """Decoding steps from a frame's first token to its last: (grid - 1) * row_lag + grid."""
    return (grid - 1) * row_lag + grid


def _at(guide: torch.Tensor | None, positions) -> torch.Tensor | None:
    """A window's guide (b, tokens, width) at `positions` (a slice, or a tensor of positions); None stays None."""
    return None if guide is None else guide[:, positions]


def _frame_index(index: torch.Tensor, shape) -> torch.Tensor:
    """Frame numbers (b, t), kept in range, as an index for `gather` along the frames of a (b, t, c, h, w) tensor."""
    return index.clamp(0, shape[1] - 1)[:, :, None, None, None].expand(shape)


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


class Model(torch.nn.Module):
    family = "autoregressive"

    def __init__(self, config: Config = Config()):
        super().__init__()
        if config.transformer.vocab_size != config.tokenizer.codebook_size:
            raise ValueError(f"the transformer's vocab_size ({config.transformer.vocab_size}) must equal the tokenizer's "
                             f"codebook_size ({config.tokenizer.codebook_size})")
        self.config = config
        self.tokenizer = vqvae.VQVAE(config.tokenizer).requires_grad_(False).eval()
        self.transformer = tfm.VideoTransformer(config.transformer)
        self.predictor, self.guide_in = None, None
        if config.predictor:  # frozen: its weights come from a diffusion model (`build`, --predictor-from)
            self.predictor = FrameStackPredictor(frames=config.transformer.max_frames, width=config.predictor,
                                                 hidden=config.predictor_hidden, blocks=config.predictor_blocks)
            self.predictor.requires_grad_(False).eval()
            self.guide_in = torch.nn.Linear(config.tokenizer.code_dim, config.transformer.width, bias=False)
            torch.nn.init.zeros_(self.guide_in.weight)  # at first the model is the one without a guide
        self._orders = {}  # training on diagonal decoding's order: (source, mask) per shape, see `_training_order`

    def train(self, mode: bool = True):
        super().train(mode)
        self.tokenizer.eval()  # frozen: its codebook EMA must not move
        if self.predictor is not None:
            self.predictor.eval()
        return self

    @property
    def tokens_per_frame(self) -> int:
        return self.config.transformer.tokens_per_frame

    def sequence(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, t, c, 64, 64) -> raster-ordered token ids (b, t * 64)."""
        return rearrange(self.tokenizer.encode(video), "b t gh gw -> b (t gh gw)")

    def shifted(self, tokens: torch.Tensor) -> torch.Tensor:
        """The inputs that predict `tokens` (b, n): the start token, then tokens[:, :-1]."""
        start = torch.full_like(tokens[:, :1], self.transformer.start_token)
        return torch.cat([start, tokens[:, :-1]], dim=1)

    def guide(self, frames: torch.Tensor, given: torch.Tensor) -> torch.Tensor | None:
        """What the transformer adds at every position of a window: (b, t * 64, width); None without a predictor.

        frames (b, t, c, 64, 64) in [0, 1] are read only where `given` (b, t), a prefix of each window. The
        frozen predictor guesses the frames not given from the latest `predictor_context` given ones at most
        (moved to its first slots: it was trained on contexts that long); the tokenizer's encoder turns each
        guessed frame into the vectors its codebook is matched against, one per token; `guide_in` maps them to
        the transformer's width. Position p predicts token p, so it gets the vector of token p's cell. Given frames get zeros
        (their tokens are read, not guessed), and so do clips with nothing given (a guess from nothing is
        none). Only given frames are read: what the window goes on to draw never changes its guide.
        """
        if self.predictor is None:
            return None
        b = given.shape[0]
        with torch.no_grad():
            guess = self._guess(frames, given)
            z = F.normalize(self.tokenizer.encoder(rearrange(guess, "b t c h w -> (b t) c h w")).float(), dim=1)
        wanted = (~given & given.any(1, keepdim=True)).repeat_interleave(self.tokens_per_frame, 1)  # (b, t * 64)
        return self.guide_in(rearrange(z, "(b t) d gh gw -> b (t gh gw) d", b=b) * wanted[..., None].to(z.dtype))

    def guess(self, frames: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        """The frozen predictor's guess of a window's frames, (b, t, c, 64, 64) in [0, 1], the given ones kept as given.

        frames (b, t, c, 64, 64) in [0, 1] are read only where `given` (b, t), a bool prefix of each window (the
        latest `predictor_context` given frames at most); the frames not given are what `guide` encodes (`guess[:, k:]`
        when the first k are given). A clip with nothing given gets a guess from nothing, which the guide ignores.
        A model without a predictor has no guess.
        """
        if self.predictor is None:
            raise ValueError("this autoregressive model has no predictor, so no guess (the shipped one has): grow "
                             "one with `minivid train autoregressive --init MODEL.pt --set predictor=W --predictor-from FILE`")
        b, t = frames.shape[:2]
        if given.dtype != torch.bool or given.shape != (b, t) or \
                not torch.equal(given, torch.arange(t, device=given.device) < given.sum(1, keepdim=True)):
            raise ValueError(f"given should be a bool (b, t) = ({b}, {t}) mask that is True on a prefix of each window "
                             f"(the frames given), got {given.dtype} {tuple(given.shape)}")
        with torch.no_grad():
            return torch.where(given[:, :, None, None, None], frames, (self._guess(frames, given) + 1) / 2)

    def _guess(self, frames: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        """`guess` in the model range [-1, 1], as the tokenizer's encoder reads it."""
        t = given.shape[1]
        slots = torch.arange(t, device=frames.device)[None]  # (1, t)
        count = given.sum(1, keepdim=True)  # (b, 1): frames given
        skip = (count - self.config.predictor_context).clamp(min=0)  # the older ones it does not read
        read = frames.gather(1, _frame_index(skip + slots, frames.shape))  # slot s reads window frame skip + s
        guess = self.predictor(read * 2 - 1, slots < count - skip).clamp(-1, 1)
        return guess.gather(1, _frame_index(slots - skip, guess.shape))  # window frame f is slot f - skip's guess

    def _window_guide(self, grids: list, pixels: torch.Tensor | None = None) -> torch.Tensor | None:
        """The guide of a window that opens with the token grids `grids` (each (b, gh, gw)) given, padded to the
        window's length: their frames decoded, or `pixels` (b, len(grids), c, 64, 64) when those are the real ones."""
        if self.predictor is None or not grids:
            return None
        pixels = self.tokenizer.decode(torch.stack(grids, 1)) if pixels is None else pixels
        b, k, t = pixels.shape[0], pixels.shape[1], self.config.transformer.max_frames
        given = (torch.arange(t, device=pixels.device) < k).expand(b, t)
        return self.guide(F.pad(pixels, (0, 0, 0, 0, 0, 0, 0, t - k)), given)

    # -- training ----------------------------------------------------------------------------------

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy over every token of the clips (in nats per token)."""
        clips = batch[:, : self.config.transformer.max_frames]
        tokens = self.sequence(clips)
        inputs = self.shifted(tokens)
        source, mask, context = self._training_order(tokens.shape[1] // self.tokens_per_frame, tokens.device)
        guide = None
        if self.predictor is not None:  # each clip's window opens with 0 to all but one of its frames given,
            b, t = clips.shape[:2]  # or, on diagonal decoding's order, with that order's context, as in generating
            count = torch.randint(0, t, (b, 1), device=clips.device) if context is None else context
            guide = self.guide(clips, (torch.arange(t, device=clips.device) < count).expand(b, t))
        if self.config.own_tokens > 0:  # parallel scheduled sampling (Duckworth et al. 2019), one pass
            with torch.no_grad():  # the model's own token at every position, drawn given the true past
                logits = self.transformer(inputs, guide=guide).float()
                drawn = draw(logits, gumbel_noise(logits.shape, None, logits.device))  # at temperature 1
            inputs = replaced_at_random(inputs, self.shifted(drawn), self.config.own_tokens)
        if self.config.token_noise > 0:  # corrupt some inputs; the targets stay the true tokens
            noise = torch.randint_like(inputs, self.config.transformer.vocab_size)
            inputs = replaced_at_random(inputs, noise, self.config.token_noise)
        if source is not None:  # this step replays diagonal decoding's order (`Config.diagonal_lags`)
            inputs = inputs[:, source + 1]  # inputs[:, q + 1] holds token q; inputs[:, 0] the start token
        logits = self.transformer(inputs, mask=mask, guide=guide)
        return F.cross_entropy(rearrange(logits, "b n v -> (b n) v").float(), tokens.flatten())

    @torch.compiler.disable
    def _training_order(self, frames: int, device) -> tuple:
        """One training step's (source, mask, context), see `diagonal_order`: at `diagonal_rate`, diagonal decoding
        at one of `diagonal_lags` (rows in raster order, row_lag 8) after a context of 0 to frames - 1 frames, else
        raster order: (None, None, None), the plain causal pass (also without `diagonal_lags`).

        Drawn from torch's CPU generator outside any compiled graph, which then sees two tensors of one
        shape whatever was drawn; each order is built once and kept on the device.
        """
        c, n = self.config, self.tokens_per_frame
        if not c.diagonal_lags or float(torch.rand(())) >= c.diagonal_rate:
            return None, None, None
        lag, context = c.diagonal_lags[int(torch.randint(len(c.diagonal_lags), ()))], int(torch.randint(0, frames, ()))
        if lag == n:  # a frame's tokens: raster order, whatever the context
            return None, None, None
        key = (context, frames, lag, str(device))
        if key not in self._orders:
            source, mask = diagonal_order(context, frames - context, self.tokenizer.grid, lag)
            self._orders[key] = (source.to(device), mask.to(device))
        return *self._orders[key], context

    @torch.no_grad()
    def teacher_forced(self, clips: torch.Tensor, context: int = 10) -> torch.Tensor:
        """Future frames predicted with the true past always given (greedy per token): (b, t - context, c, h, w).

        Compare with `generate` (free-running, fed its own tokens) to see exposure bias: the gap
        between the two curves per future frame is error the model makes only because it must
        condition on its own outputs.
        """
        tokens = self.sequence(clips)
        b, t = clips.shape[:2]
        given = (torch.arange(t, device=clips.device) < context).expand(b, t)
        logits = self.transformer(self.shifted(tokens), guide=self.guide(clips, given))
        guess = rearrange(logits.argmax(-1), "b (t gh gw) -> b t gh gw", t=clips.shape[1], gh=self.tokenizer.grid)
        return self.tokenizer.decode(guess[:, context:])

    # -- sampling ----------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        context: torch.Tensor,
        num_frames: int,
        seed: int = 0,
        progress: bool = True,
        return_trace: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        use_cache: bool = True,
        decoding: str = "sequential",
        iterations: int = 4,
        lag: int = 32,
        row_lag: int = 8,
    ):
        """`num_frames` frames after `context` (b, t0, c, 64, 64) in [0, 1]; t0 may be 0.

        temperature / top_k / top_p shape each token's distribution; greedy=True takes the most likely
        token. decoding 'sequential' (token by token, KV cache unless use_cache=False), 'parallel'
        (Jacobi iterations per frame: at most `iterations` network passes, plus one to store the frame if
        it has not settled) or 'diagonal' (each frame starts `lag` steps after the one before, each row
        `row_lag` steps after the one above; lag=64 with row_lag=8 is sequential decoding, token for token).
        Returns (b, num_frames, c, 64, 64), or (video, trace) where trace has the token grids after every
        decoding step of every generated frame and the entropy / probability of each chosen token.
        """
        validate_video(context, "context", channels=1, size=64)
        c = self.config.transformer
        b, t0 = context.shape[:2]
        if int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        if t0 >= c.max_frames:
            raise ValueError(f"context has {t0} frames but the model's window is {c.max_frames}; give at most {c.max_frames - 1}")
        if decoding not in DECODINGS:
            raise ValueError(f"unknown decoding {decoding!r}; expected one of {DECODINGS}")
        if decoding == "parallel" and (int(iterations) != iterations or iterations < 1):
            raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
        if decoding == "diagonal":
            self._check_diagonal(t0, num_frames, lag, row_lag)
        filter_logits(torch.zeros(1), temperature, top_k, top_p)  # validates the sampling knobs up front
        if t0 + num_frames > c.max_frames:
            warnings.warn(f"rolling out {t0 + num_frames} frames past the {c.max_frames}-frame training window: "
                          f"the window slides, each new frame sees the {c.max_frames - 1} before it", stacklevel=2)
        device = next(self.parameters()).device
        generator = torch.Generator(device).manual_seed(int(seed))
        frames = list(self.tokenizer.encode(context.to(device)).unbind(1)) if t0 else []  # each (b, gh, gw)
        n = self.tokens_per_frame
        trace = {"steps": [], "entropy": [], "prob": []}
        if decoding == "diagonal":  # frames overlap in time: decoded together, then recorded frame by frame
            knobs = dict(temperature=temperature, top_k=top_k, top_p=top_p)
            made = self._generate_diagonal(frames, b, num_frames, generator, lag, row_lag, greedy, progress, return_trace,
                                           context=context.to(device), **knobs)
            for tokens, steps, logits in made:
                frames.append(tokens.view(b, self.tokenizer.grid, self.tokenizer.grid))
                if return_trace:
                    self._record(trace, tokens, steps, logits, **knobs)
        else:
            cache, pending = None, None  # keys/values of the window so far, and the input that predicts the next token
            guide, held = None, None  # the window's guide, made as it opens, and its frames (kept and new)
            for _ in tqdm(range(num_frames), desc="generate", disable=not progress):
                window = frames[-(c.max_frames - 1):]
                past = rearrange(torch.stack(window, 1), "b t gh gw -> b (t gh gw)") if window else torch.zeros(b, 0, dtype=torch.long, device=device)
                if held is None or held + 1 > c.max_frames:  # the first frame, or the window slides: read the kept frames once
                    held = len(window)
                    guide = self._window_guide(window, context.to(device) if len(frames) == t0 else None)
                    if use_cache or decoding == "parallel":
                        cache, pending = self._prefill(past)  # the kept frames' guide is zero: they are given
                gumbel = None if greedy else gumbel_noise((b, n, c.vocab_size), generator, device)  # fixed per position
                knobs = dict(temperature=temperature, top_k=top_k, top_p=top_p, gumbel=gumbel)
                if decoding == "parallel":
                    guess = frames[-1].flatten(1) if frames else torch.zeros(b, n, dtype=torch.long, device=device)
                    tokens, steps, logits = self._frame_parallel(cache, pending, guess, iterations, guide, **knobs)
                else:
                    tokens, steps, logits = self._frame_sequential(cache if use_cache else None, pending, past, guide, **knobs)
                pending = tokens[:, -1:]
                held += 1
                frames.append(tokens.view(b, self.tokenizer.grid, self.tokenizer.grid))
                if return_trace:
                    self._record(trace, tokens, steps, logits, temperature, top_k, top_p)
        tokens = torch.stack(frames[t0:], 1)  # (b, num_frames, gh, gw)
        video = self.tokenizer.decode(tokens)
        if not return_trace:
            return video
        trace["tokens"] = tokens
        trace["entropy"] = torch.stack(trace["entropy"], 1)
        trace["prob"] = torch.stack(trace["prob"], 1)
        return video, trace

    def network_evaluations(self, num_context: int, num_frames: int, use_cache: bool = True, decoding: str = "sequential",
                            iterations: int = 4, lag: int = 32, row_lag: int = 8, **generate_kwargs) -> int:
        """How many network passes `generate` makes: the transformer's, and the predictor's if it has one (parallel
        decoding: at most this many).

        Sequential with the cache: one pass per token, plus one to read the window whenever the cache is
        filled (the first frame, and each time the window slides). Without the cache: one full pass per
        token. Parallel: up to `iterations` passes per frame and one to store it, plus the window reads.
        Diagonal: one pass per step, (num_frames - 1) * lag + a frame's steps, plus the window reads
        (the context once, then one each time a frame starts past the window). A model with a predictor
        calls it once more each time a window opens with a finished frame to guess from.
        """
        c, n = self.config.transformer, self.tokens_per_frame
        guided = int(self.predictor is not None)
        if decoding == "diagonal":
            last = diagonal_steps(num_frames, self.tokenizer.grid, lag, row_lag).amax(1)  # each new frame's last step
            steps = (num_frames - 1) * lag + steps_per_frame(self.tokenizer.grid, row_lag)
            passes, window = steps, None
            for new in range(num_frames):
                start = num_context + new
                if window is None or start - window >= c.max_frames:  # a window opens (`_generate_diagonal`)
                    window = max(0, start - (c.max_frames - 1))
                    finished = sum(1 for f in range(window, start) if f < num_context or last[f - num_context] < new * lag)
                    passes += (1 if start > window else 0) + (guided if finished else 0)
            return passes
        passes, held, seen = 0, None, num_context
        for _ in range(num_frames):
            window = min(seen, c.max_frames - 1)
            if held is None or held + 1 > c.max_frames:  # a window opens: read it (with a cache), guess from it
                passes += (int(use_cache or decoding == "parallel") + guided) if window else 0
                held = window
            passes += n if decoding == "sequential" else iterations + 1
            held += 1
            seen += 1
        return passes

    def _prefill(self, past):
        """A fresh cache holding the inputs [start, past[:-1]] (one network pass), and the input that comes next."""
        cache = self.transformer.new_cache(past.shape[0])
        if not past.shape[1]:  # nothing to read: the start token predicts the first token
            return cache, torch.full((past.shape[0], 1), self.transformer.start_token, dtype=torch.long, device=past.device)
        self.transformer(self.shifted(past), cache)
        return cache, past[:, -1:]

    def _frame_sequential(self, cache, pending, past, guide, temperature, top_k, top_p, gumbel):
        """One frame, token by token. Returns tokens (b, n), the grid after each step, and the logits used.

        With a cache only the new position goes through the network; without one (cache None) every
        token is a full pass over the window so far, which is what the cache saves. `guide`: the window's
        (b, window tokens, width), or None.
        """
        b, n = past.shape[0], self.tokens_per_frame
        tokens = past.new_zeros(b, 0)
        steps, used = [], []
        for i in range(n):
            at = past.shape[1] + i  # the position that predicts this token
            if cache is not None:
                logits = self.transformer(pending, cache, guide=_at(guide, slice(at, at + 1)))[:, -1]
            else:
                inputs = self.shifted(torch.cat([past, tokens, tokens.new_zeros(b, 1)], 1))
                logits = self.transformer(inputs, guide=_at(guide, slice(0, at + 1)))[:, -1]
            token = draw(filter_logits(logits, temperature, top_k, top_p), None if gumbel is None else gumbel[:, i])  # (b,)
            tokens = torch.cat([tokens, token[:, None]], dim=1)
            pending = token[:, None]
            used.append(logits)
            steps.append(self._partial_grid(tokens))
        return tokens, steps, torch.stack(used, 1)

    def _frame_parallel(self, cache, pending, guess, iterations, guide, temperature, top_k, top_p, gumbel):
        """One frame by Jacobi iterations: every position redrawn at once from the current guess."""
        b = pending.shape[0]
        prefix = cache.length
        guide = _at(guide, slice(prefix, prefix + self.tokens_per_frame))
        steps = []
        for _ in range(iterations):
            cache.length = prefix  # overwrite the frame's positions with this iteration's
            logits = self.transformer(torch.cat([pending, guess[:, :-1]], 1), cache, guide=guide)  # (b, n, vocab)
            new = draw(filter_logits(logits, temperature, top_k, top_p), gumbel)
            steps.append(new.view(b, self.tokenizer.grid, -1))
            if torch.equal(new, guess):  # a fixed point: what sequential decoding gives; the cache already matches it
                return guess, steps, logits
            guess = new
        cache.length = prefix  # not settled: store the keys and values of the tokens kept
        self.transformer(torch.cat([pending, guess[:, :-1]], 1), cache, guide=guide)
        return guess, steps, logits

    def _check_diagonal(self, num_context, num_frames, lag, row_lag):
        """Diagonal decoding's knobs, checked before any work: one ValueError saying what would do."""
        c, grid = self.config.transformer, self.tokenizer.grid
        if not _is_integer(row_lag) or not 1 <= row_lag <= grid:
            raise ValueError(f"row_lag must be an integer from 1 (anti-diagonals) to {grid} (raster order), got {row_lag!r}")
        span = steps_per_frame(grid, row_lag)
        if not _is_integer(lag) or not 1 <= lag <= span:
            raise ValueError(f"lag must be an integer from 1 to {span} (a frame's steps at row_lag={row_lag}; "
                             f"{span} draws frames one after another), got {lag!r}")
        in_flight = (span - 1) // lag  # earlier frames still being drawn when a frame starts
        if num_context + num_frames > c.max_frames and in_flight > c.max_frames - 1:
            raise ValueError(f"lag={lag} keeps {in_flight} earlier frames unfinished when a frame starts, more than the "
                             f"{c.max_frames}-frame window can hold as it slides; for {num_context + num_frames} frames use "
                             f"lag >= {(span - 1) // c.max_frames + 1}, or roll out at most {c.max_frames}")

    def _generate_diagonal(self, frames, batch, num_frames, generator, lag, row_lag, greedy, progress, keep_trace,
                           temperature, top_k, top_p, context=None):
        """Diagonal decoding: every token drawn once, all the tokens of one spatio-temporal diagonal in one pass.

        Which tokens share a pass: at step s, each frame f in flight draws its tokens with
        r * row_lag + c = s - f * lag (`diagonal_steps`). With row_lag = 8 that is one token a frame, its
        token s - f * lag in raster order: frame f + 1's token i is drawn together with frame f's token
        i + lag. With row_lag = 1 it is one anti-diagonal of each frame in flight (Ye et al. 2025). Each
        token keeps the Gumbel noise of its position, so lag = 64 with row_lag = 8 (one token a step, in
        raster order) gives exactly the tokens of sequential decoding.

        Why it is an approximation: the model was trained in raster order, to predict a token from every
        token before it. Here frame f + 1's token i is drawn before frame f's tokens from i + lag on exist
        (and, with row_lag < 8, before the end of the row above). It attends only to the tokens drawn so
        far (the attention mask keeps the raster rule by position: nothing sees a later position), its keys
        and values are not recomputed when the missing tokens arrive, and the tokens of one step are
        drawn side by side, not one given the other. A token's input is the token before it in raster
        order; where that one is not drawn yet (the first token of a frame, or of a row when row_lag < 8),
        the newest token drawn at that cell in an earlier frame stands in: consecutive frames are alike,
        which is the bet the method makes. The smaller the lag, the fewer passes and the more is missing.
        With a predictor, each window's guide is guessed from the frames finished when it opens (`context`,
        the real frames, for the first; else decoded), so frames still in flight at a slide read the new guess.

        Returns, per generated frame: its tokens (b, n), its grid after each step that drew some of it
        (-1 where not drawn yet) and the logits its tokens were drawn from (b, n, vocab); the last two
        only if keep_trace (else an empty list and None).
        """
        c, n, grid = self.config.transformer, self.tokens_per_frame, self.tokenizer.grid
        device = next(self.parameters()).device
        t0, total = len(frames), len(frames) + num_frames
        tokens = torch.full((batch, total, n), -1, dtype=torch.long, device=device)  # every frame's tokens, -1 until drawn
        drawn = torch.zeros(total, n, dtype=torch.bool, device=device)  # the same for every clip: one schedule
        newest = torch.full((batch, n), self.transformer.start_token, dtype=torch.long, device=device)  # the stand-ins
        if t0:
            tokens[:, :t0] = rearrange(torch.stack(frames, 1), "b t gh gw -> b t (gh gw)")
            drawn[:t0] = True
            newest = tokens[:, t0 - 1].clone()
        step_of = diagonal_steps(num_frames, grid, lag, row_lag).to(device)  # (num_frames, n)
        noise = {}  # Gumbel noise of each frame in flight, drawn as it starts: in frame order, as sequential decoding does
        steps = [[] for _ in range(num_frames)]
        used = torch.zeros(batch, num_frames, n, c.vocab_size, device=device) if keep_trace else None
        window, cache, guide = 0, None, None  # the first frame the cache's positions count from, the cache, the guide
        for step in tqdm(range(int(step_of.max()) + 1), desc="generate", disable=not progress):
            if step % lag == 0 and step // lag < num_frames:  # a frame starts
                start = t0 + step // lag
                noise[start] = None if greedy else gumbel_noise((batch, n, c.vocab_size), generator, device)
                if cache is None or start - window >= c.max_frames:  # the first step, or the window slides
                    window = max(0, start - (c.max_frames - 1))
                    cache, guide = self._diagonal_cache(tokens, drawn, newest, window, start, context if start == t0 else None)
            frame, cell = (step_of == step).nonzero(as_tuple=True)  # this step's tokens, in raster order
            frame = frame + t0
            inputs = self._diagonal_inputs(tokens, drawn, newest, frame, cell, window)  # (b, k)
            at = (frame - window) * n + cell
            logits = self.transformer(inputs, cache, at, guide=_at(guide, at))  # (b, k, vocab)
            pairs = zip(frame.tolist(), cell.tolist())
            gumbel = None if greedy else torch.stack([noise[f][:, i] for f, i in pairs], 1)  # (b, k, vocab)
            new = draw(filter_logits(logits, temperature, top_k, top_p), gumbel)  # (b, k)
            tokens[:, frame, cell] = new
            drawn[frame, cell] = True
            newest[:, cell] = new  # a cell is drawn in frame order, so this is its newest token
            for f in frame.unique().tolist():
                if keep_trace:
                    steps[f - t0].append(tokens[:, f].view(batch, grid, grid).clone())
                if not (step_of[f - t0] > step).any():  # the frame is done
                    noise.pop(f)
            if keep_trace:
                used[:, frame - t0, cell] = logits
        return [(tokens[:, t0 + f], steps[f], used[:, f] if keep_trace else None) for f in range(num_frames)]

    def _diagonal_inputs(self, tokens, drawn, newest, frame, cell, window):
        """The input at each (frame, cell) slot: the token before it in raster order, or its stand-in."""
        n = self.tokens_per_frame
        before = (frame * n + cell - 1).clamp(min=0)
        frame_before, cell_before = before // n, before % n
        inputs = torch.where(drawn[frame_before, cell_before], tokens[:, frame_before, cell_before], newest[:, cell_before])
        return inputs.masked_fill((frame - window) * n + cell == 0, self.transformer.start_token)  # the window opens with it

    def _diagonal_cache(self, tokens, drawn, newest, window, start, context=None):
        """A fresh cache holding every token drawn so far in frames window..start-1, in raster order (one pass, if any),
        and the window's guide (or None), guessed from its finished frames: `context` if given, else decoded."""
        cache = self.transformer.new_cache(tokens.shape[0])
        finished = drawn[window:start].all(1)
        done = int(finished.cumprod(0).sum())  # frames finish in order: the finished ones open the window
        grids = [tokens[:, f].view(-1, self.tokenizer.grid, self.tokenizer.grid) for f in range(window, window + done)]
        guide = self._window_guide(grids, context if context is not None and context.shape[1] == done else None)
        frame, cell = drawn[window:start].nonzero(as_tuple=True)
        if len(frame):
            frame = frame + window
            positions = (frame - window) * self.tokens_per_frame + cell
            self.transformer(self._diagonal_inputs(tokens, drawn, newest, frame, cell, window), cache, positions,
                             guide=_at(guide, positions))
        return cache, guide

    def _record(self, trace, tokens, steps, logits, temperature, top_k, top_p):
        """Add one generated frame to the trace: its steps, and the entropy and probability of each chosen token."""
        grid = (tokens.shape[0], self.tokenizer.grid, self.tokenizer.grid)
        probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)  # (b, n, vocab)
        trace["steps"].append(steps)
        trace["entropy"].append(-(probs * probs.clamp_min(1e-12).log()).sum(-1).view(grid))
        trace["prob"].append(probs.gather(-1, tokens[..., None])[..., 0].view(grid))

    def _partial_grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """A frame's tokens so far as a grid, -1 where not yet drawn: (b, gh, gw)."""
        grid = torch.full((tokens.shape[0], self.tokens_per_frame), -1, dtype=torch.long, device=tokens.device)
        grid[:, : tokens.shape[1]] = tokens
        return grid.view(tokens.shape[0], self.tokenizer.grid, self.tokenizer.grid)


# --------------------------------------------------------------------------------------------
# building and loading
# --------------------------------------------------------------------------------------------


def from_tokenizer(tokenizer: vqvae.VQVAE, transformer_config: tfm.Config) -> Model:
    """A model around a trained tokenizer (its weights copied in and frozen) and a fresh transformer."""
    model = Model(Config(tokenizer.config, dataclasses.replace(transformer_config, vocab_size=tokenizer.config.codebook_size)))
    model.tokenizer.load_state_dict(tokenizer.state_dict())
    return model


def build(preset: str, args=None) -> Model:
    """`minivid train autoregressive --preset P [--init TOKENIZER.pt]`: the tokenizer defaults to the shipped one.

    `--set predictor=W --predictor-from FILE` adds a guide (see `Model.guide`): the predictor of a diffusion or
    hybrid export of that width, frozen; the model it is added to starts unchanged.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} for autoregressive; expected one of {sorted(PRESETS)}")
    from minivid import checkpoints

    init = getattr(args, "init", None) if args is not None else None
    tokenizer = checkpoints.resolve(init or "pretrained:vqvae")
    rates = {}  # the training-only options asked for: --token-noise, --own-tokens, --diagonal-rate, --diagonal-lags
    for name in ("token_noise", "own_tokens", "diagonal_rate"):
        value = getattr(args, name, None) if args is not None else None
        if value is None:
            continue
        closed = name == "diagonal_rate"  # a rate of 1: every step on a diagonal order
        if not (0 <= value <= 1 if closed else 0 <= value < 1):
            raise ValueError(f"--{name.replace('_', '-')} must lie in [0, 1{']' if closed else ')'}, got {value}")
        rates[name] = value
    lags = getattr(args, "diagonal_lags", None) if args is not None else None
    if getattr(tokenizer, "family", None) == "autoregressive":  # continue training a whole model
        model = tokenizer.train()
    elif getattr(tokenizer, "family", None) == "vqvae":
        model = from_tokenizer(tokenizer, PRESETS[preset].transformer)
    else:
        raise ValueError(f"--init expects a vqvae or autoregressive export, got a {getattr(tokenizer, 'family', None)!r} model")
    if lags is not None:
        rates["diagonal_lags"] = parse_lags(lags, model.tokens_per_frame)
    elif "diagonal_rate" in rates and not model.config.diagonal_lags:
        raise ValueError("--diagonal-rate is the share of steps on a diagonal order: give the lags too, "
                         "e.g. --diagonal-lags 32,16,8")
    from minivid.families import with_overrides

    asked = [pair.partition("=")[0] for pair in (getattr(args, "set", None) or [])]
    if any(name != "predictor" for name in asked):
        raise ValueError(f"the autoregressive model takes --set predictor=W only, got {asked}; its training options "
                         "have flags of their own (--token-noise, --own-tokens, --diagonal-lags, --diagonal-rate)")
    config = with_overrides(dataclasses.replace(model.config, **rates), args)
    source = getattr(args, "predictor_from", None) if args is not None else None
    if source and not config.predictor:
        raise ValueError(f"--predictor-from gives the model a guide: add --set predictor=W, W the width of {source}'s predictor")
    if config.predictor != model.config.predictor:
        if model.config.predictor:
            raise ValueError(f"this model has a predictor of width {model.config.predictor}; continue it with "
                             f"--set predictor={model.config.predictor}")
        if not source:
            raise ValueError("the autoregressive model does not train its predictor: take a trained one with "
                             "--predictor-from FILE (a diffusion or hybrid export whose predictor has that width)")
    other = None
    if source:  # its predictor's shape (channels per frame, blocks) comes with it; the width must be asked for
        from minivid.video_diffusion import predictor_kind

        other = checkpoints.resolve(source)
        hidden, blocks = predictor_kind(getattr(other, "config", None))[2:]
        config = dataclasses.replace(config, predictor_hidden=hidden, predictor_blocks=blocks)
    shape = ("predictor", "predictor_hidden", "predictor_blocks")
    if any(getattr(config, name) != getattr(model.config, name) for name in shape):  # a new guide, or a new predictor
        model = with_guide(model, config.predictor, config.predictor_hidden, config.predictor_blocks)
    if source:  # checked against the predictor the model has now (of the source's shape)
        from minivid.video_diffusion import take_predictor

        take_predictor(model, other, source)
        context = getattr(other.config, "max_context", config.predictor_context)  # the contexts it was trained on
        config = dataclasses.replace(config, predictor_context=context)
    model.config = config
    return model


def with_guide(model: Model, width: int, hidden: int = Config.predictor_hidden,
               blocks: int = Config.predictor_blocks) -> Model:
    """`model` with a predictor of `width` (`hidden` channels a frame, `blocks` translator blocks; untrained: load
    one) and a zero guide, so it starts as `model`; a model that has a guide keeps it and gets the new predictor."""
    grown = Model(dataclasses.replace(model.config, predictor=width, predictor_hidden=hidden, predictor_blocks=blocks))
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith("predictor.")}  # a new one is loaded next
    missing, unexpected = grown.load_state_dict(kept, strict=False)
    assert not unexpected and all(k.startswith(("predictor.", "guide_in.")) for k in missing), (missing, unexpected)
    assert model.guide_in is None or not any(k.startswith("guide_in.") for k in missing), missing  # a guide is kept
    return grown.train(model.training)


def from_config(config: dict) -> Model:
    """Rebuild from a checkpoint's plain-data config."""
    return Model(Config(vqvae.Config(**config["tokenizer"]), tfm.Config(**config["transformer"]),
                        token_noise=config.get("token_noise", 0.0), own_tokens=config.get("own_tokens", 0.0),
                        diagonal_lags=tuple(config.get("diagonal_lags", ())),
                        diagonal_rate=config.get("diagonal_rate", Config.diagonal_rate),
                        predictor=config.get("predictor", 0),
                        predictor_context=config.get("predictor_context", Config.predictor_context),
                        predictor_hidden=config.get("predictor_hidden", Config.predictor_hidden),
                        predictor_blocks=config.get("predictor_blocks", Config.predictor_blocks)))


def parse_lags(text: str, tokens_per_frame: int) -> tuple:
    """'32,16,8' -> (32, 16, 8): lags of diagonal decoding, each from 1 to a frame's tokens; one clear error otherwise."""
    try:
        lags = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        lags = ()
    if not lags or not all(1 <= lag <= tokens_per_frame for lag in lags):
        raise ValueError(f"--diagonal-lags takes comma-separated integers from 1 to {tokens_per_frame} "
                         f"(a frame's tokens; {tokens_per_frame} is raster order), e.g. 32,16,8; got {text!r}")
    return lags
