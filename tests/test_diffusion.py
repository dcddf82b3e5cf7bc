"""The diffusion process: schedules, forward noising, one reverse step, the sampling loop."""

import pytest
import torch

from minivid import diffusion


@pytest.mark.parametrize("name", diffusion.SCHEDULES)
def test_schedules_are_valid(name):
    betas = diffusion.make_betas(name, 1000)
    alpha_bar = diffusion.alpha_bar_from_betas(betas)
    assert betas.shape == (1000,) and (betas > 0).all() and (betas < 1).all()
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()  # strictly more noise every step
    assert alpha_bar[0] > 0.99 and alpha_bar[-1] < 1e-3  # starts clean, ends (almost) pure noise


def test_linear_schedule_matches_ddpm():
    betas = diffusion.linear_schedule(1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)


def test_unknown_schedule_and_bad_steps():
    with pytest.raises(ValueError, match="expected one of"):
        diffusion.make_betas("quadratic")
    with pytest.raises(ValueError, match="positive integer"):
        diffusion.timesteps_for(1000, 0)
    with pytest.raises(ValueError, match="cannot exceed"):
        diffusion.timesteps_for(10, 11)


def test_q_sample_statistics():
    alpha_bar = diffusion.alpha_bar_from_betas(diffusion.cosine_schedule())
    torch.manual_seed(0)
    x0 = torch.full((4000, 1, 1, 4, 4), 0.5)
    t = torch.full((4000,), 500)
    x_t = diffusion.q_sample(x0, t, torch.randn_like(x0), alpha_bar)
    ab = alpha_bar[500]
    assert x_t.mean().item() == pytest.approx(0.5 * ab.sqrt().item(), abs=0.005)
    assert x_t.var().item() == pytest.approx(1 - ab.item(), abs=0.02)


def test_per_frame_timesteps_and_clean_marker():
    alpha_bar = diffusion.alpha_bar_from_betas(diffusion.cosine_schedule())
    x0, eps = torch.rand(1, 3, 1, 4, 4), torch.randn(1, 3, 1, 4, 4)
    x_t = diffusion.q_sample(x0, torch.tensor([[-1, 0, 999]]), eps, alpha_bar)
    assert torch.equal(x_t[:, 0], x0[:, 0])  # t = -1 means clean
    assert (x_t[:, 2] - eps[:, 2]).abs().max() < 0.01  # t = T-1 is (nearly) pure noise


@pytest.mark.parametrize("prediction", diffusion.PREDICTIONS)
def test_targets_invert(prediction):
    alpha_bar = diffusion.alpha_bar_from_betas(diffusion.cosine_schedule())
    x0, eps, t = torch.rand(3, 2, 1, 4, 4) * 2 - 1, torch.randn(3, 2, 1, 4, 4), torch.tensor([10, 500, 900])
    x_t = diffusion.q_sample(x0, t, eps, alpha_bar)
    target = diffusion.target_for(prediction, x0, eps, t, alpha_bar)
    x0_hat, eps_hat = diffusion.x0_eps_from(prediction, target, x_t, t, alpha_bar)
    assert torch.allclose(x0_hat, x0, atol=1e-3) and torch.allclose(eps_hat, eps, atol=2e-3)


def test_ddim_eta_one_is_ddpm_posterior():
    """DDIM Eq. (12) with eta = 1 and t_prev = t - 1 equals DDPM's posterior q(x_{t-1} | x_t, x0)."""
    alpha_bar = diffusion.alpha_bar_from_betas(diffusion.linear_schedule())
    x0, eps = torch.rand(2, 1, 1, 4, 4), torch.randn(2, 1, 1, 4, 4)
    t = torch.tensor([300, 700])
    x_t = diffusion.q_sample(x0, t, eps, alpha_bar)
    noise = torch.randn_like(x0)
    got = diffusion.step(x0, eps, t, t - 1, alpha_bar, eta=1.0, noise=noise)
    mean, var = diffusion.ddpm_posterior(x0, x_t, t, alpha_bar)
    assert torch.allclose(got, mean + var.sqrt() * noise, atol=1e-4)


class Oracle(torch.nn.Module):
    """Knows the answer x0 and returns the exact eps for any x_t: the sampler must land on x0."""

    def __init__(self, x0, alpha_bar):
        super().__init__()
        self.x0, self.alpha_bar = x0, alpha_bar

    def forward(self, x_t, t):
        ab = diffusion.alpha_bar_at(self.alpha_bar, t, x_t.ndim)
        return (x_t - ab.sqrt() * self.x0) / (1 - ab).sqrt()


@pytest.mark.parametrize("steps, eta", [(1, 0.0), (10, 0.0), (25, 1.0)])
def test_sampling_loop_recovers_x0_with_an_oracle(steps, eta):
    alpha_bar = diffusion.alpha_bar_from_betas(diffusion.cosine_schedule())
    x0 = torch.rand(2, 3, 1, 8, 8) * 2 - 1
    out, trace = diffusion.sample(Oracle(x0, alpha_bar), x0.shape, alpha_bar, steps=steps, eta=eta, prediction="eps",
                                  generator=torch.Generator().manual_seed(0), progress=False, return_trace=True)
    assert torch.allclose(out, x0, atol=3e-3)  # float32: x0 = (x_t - sqrt(1-ab) eps) / sqrt(ab) with ab ~ 4e-5 at t = 999
    assert len(trace) == steps and trace[0]["t"] == 999


def test_sampling_is_seeded():
    alpha_bar = diffusion.alpha_bar_from_betas(diffusion.cosine_schedule())
    net = lambda x, t: 0.1 * x  # noqa: E731 - a stand-in network
    a = diffusion.sample(net, (1, 1, 1, 4, 4), alpha_bar, steps=5, eta=1.0, generator=torch.Generator().manual_seed(3), progress=False)
    b = diffusion.sample(net, (1, 1, 1, 4, 4), alpha_bar, steps=5, eta=1.0, generator=torch.Generator().manual_seed(3), progress=False)
    assert torch.equal(a, b)


def test_classifier_free_guidance_formula():
    def net(x, t, c):
        return x * 0 + c

    out = diffusion.guided_output(net, torch.zeros(1), None, 2.0, {"c": torch.tensor(1.0)}, {"c": torch.tensor(0.5)})
    assert out.item() == pytest.approx(3 * 1.0 - 2 * 0.5)
    assert diffusion.guided_output(net, torch.zeros(1), None, 0.0, {"c": torch.tensor(1.0)}, None).item() == 1.0


def test_loss_respects_mask():
    alpha_bar = diffusion.alpha_bar_from_betas(diffusion.cosine_schedule())
    x0 = torch.zeros(1, 2, 1, 4, 4)

    def net(x_t, t):  # perfect on frame 0, wrong on frame 1
        out = diffusion.target_for("eps", x0, eps, t, alpha_bar).clone()
        out[:, 1] += 1
        return out

    eps = torch.randn_like(x0)
    t = torch.tensor([400])
    assert diffusion.loss(net, x0, t, alpha_bar, "eps", mask=torch.tensor([[1.0, 0.0]]), eps=eps).item() == pytest.approx(0.0, abs=1e-6)
    assert diffusion.loss(net, x0, t, alpha_bar, "eps", eps=eps).item() == pytest.approx(0.5, abs=1e-4)


def test_min_snr_weights_by_hand():
    # alpha_bar = 0.5 at t=0 gives SNR 1; alpha_bar = 0.9 at t=1 gives SNR 9 (capped at gamma = 5)
    alpha_bar = torch.tensor([0.5, 0.9])
    t = torch.tensor([0, 1])
    assert torch.allclose(diffusion.min_snr_weight(t, alpha_bar, 5.0, "x0"), torch.tensor([1.0, 5.0]))
    assert torch.allclose(diffusion.min_snr_weight(t, alpha_bar, 5.0, "eps"), torch.tensor([1.0, 5 / 9]))
    assert torch.allclose(diffusion.min_snr_weight(t, alpha_bar, 5.0, "v"), torch.tensor([0.5, 0.5]))
    assert diffusion.min_snr_weight(torch.zeros(2, 3, dtype=torch.long), alpha_bar, 5.0).shape == (2, 3)  # per frame
    with pytest.raises(ValueError, match="prediction"):
        diffusion.min_snr_weight(t, alpha_bar, 5.0, "score")


def test_loss_weighting_changes_only_the_weights():
    alpha_bar = diffusion.alpha_bar_from_betas(diffusion.cosine_schedule(1000))
    x0, eps = torch.rand(2, 3, 1, 8, 8) * 2 - 1, torch.randn(2, 3, 1, 8, 8)

    def model(x_t, t):
        return torch.zeros_like(x_t)

    t = torch.tensor([100, 900])
    plain = diffusion.loss(model, x0, t, alpha_bar, "v", eps=eps)
    assert torch.equal(plain, diffusion.loss(model, x0, t, alpha_bar, "v", eps=eps, min_snr_gamma=0.0))
    per_clip = [diffusion.loss(model, x0[i : i + 1], t[i : i + 1], alpha_bar, "v", eps=eps[i : i + 1]) for i in range(2)]
    w = diffusion.min_snr_weight(t, alpha_bar, 5.0, "v")
    weighted = diffusion.loss(model, x0, t, alpha_bar, "v", eps=eps, min_snr_gamma=5.0)
    assert torch.allclose(weighted, (w[0] * per_clip[0] + w[1] * per_clip[1]) / 2)


class _CopyLastGiven(torch.nn.Module):
    """A stand-in 'network' predicting x0 directly: the last given frame everywhere, or mid-grey with no context."""

    def __init__(self, uses_context=True):
        super().__init__()
        self.uses_context = uses_context
        self.register_buffer("alpha_bar", diffusion.alpha_bar_from_betas(diffusion.cosine_schedule(1000)))
        self.config = type("Config", (), {"num_frames": 6, "prediction": "x0"})()

    def forward(self, x_t, t, cond=None, cond_mask=None):
        given = int(cond_mask[0].sum())
        if not self.uses_context or given == 0:
            return torch.zeros_like(x_t)
        return cond[:, given - 1 : given].expand_as(x_t)


def test_context_probe_measures_what_the_context_buys():
    torch.manual_seed(0)
    clips = torch.rand(3, 6, 1, 8, 8)
    rows = diffusion.context_probe(_CopyLastGiven(), clips, [10, 999], context=4)
    future = clips[:, 4:]
    copy_last = ((future - clips[:, 3:4]) ** 2).sum(dim=(2, 3, 4)).mean().item()
    grey = ((future - 0.5) ** 2).sum(dim=(2, 3, 4)).mean().item()
    for row in rows:  # an x0-predicting stand-in ignores the noise: the same numbers at every t
        assert row["mse_with"] == pytest.approx(copy_last, rel=1e-5)
        assert row["mse_without"] == pytest.approx(grey, rel=1e-5)
        assert row["ratio"] == pytest.approx(grey / copy_last, rel=1e-5)
    blind = diffusion.context_probe(_CopyLastGiven(uses_context=False), clips, [500], context=4)
    assert blind[0]["ratio"] == 1.0
    with pytest.raises(ValueError, match="between 1 and 5"):
        diffusion.context_probe(_CopyLastGiven(), clips, [500], context=6)
    with pytest.raises(ValueError, match="diffusion-style model"):
        diffusion.context_probe(torch.nn.Identity(), clips, [500])
