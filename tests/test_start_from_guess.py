"""Sampling from the predictor's guess (SDEdit): `generate(..., start=s)` noises the guess to a share s of the
schedule and runs only the steps below it. The visited steps, the start near the guess, the counts and the errors."""

import pytest
import torch

from minivid import data, diffusion, video_diffusion


@pytest.fixture(scope="module")
def model():
    config = video_diffusion.Config(**{**video_diffusion.PRESETS["nano"].__dict__, "predictor": 8, "predictor_net": "framestack"})
    m = video_diffusion.Model(config).eval()
    torch.manual_seed(0)
    for p in m.parameters():  # zero-initialised layers would make the denoiser do nothing
        torch.nn.init.normal_(p, std=0.05)
    return m


def test_started_timesteps_are_the_schedules_tail():
    full = diffusion.timesteps_for(1000, 20).tolist()
    assert diffusion.started_timesteps(1000, 20) == full
    half = diffusion.started_timesteps(1000, 20, 500)
    assert half == [t for t in full if t <= 500] and len(half) == 10 and half[-1] == 0
    assert diffusion.started_timesteps(1000, 20, 0) == [0]  # the last step, 0, is in every schedule of 2 or more
    assert diffusion.started_timesteps(1000, 10, 600) == [555, 444, 333, 222, 111, 0]  # the highest at or below 600
    for bad in (-1, 1000, 2.5):
        with pytest.raises(ValueError, match="start must be a timestep in 0..999"):
            diffusion.started_timesteps(1000, 20, bad)
    with pytest.raises(ValueError, match=r"1 step\(s\) visit \[999\]: use 2 or more"):
        diffusion.started_timesteps(1000, 1, 10)


def test_a_low_start_stays_at_the_guess_and_start_1_is_the_plain_sampler(model):
    context = data.standard_test_set(2)[:, :3]
    guess = model.predict_mean(context, 2)
    near = model.generate(context, 2, seed=0, steps=20, start=0.01, progress=False)  # from t = 0: the last step alone
    far = model.generate(context, 2, seed=0, steps=20, start=0.9, progress=False)
    assert near.shape == guess.shape and (near - guess).abs().max() < 0.05
    assert (far - guess).abs().mean() > 5 * (near - guess).abs().mean()
    # start = 1 is the sampler without a start: the same loop from pure noise, step for step
    cond = torch.zeros(2, 5, 1, 64, 64)
    cond[:, :3] = diffusion.to_model_range(context)
    mask = torch.tensor([[1.0, 1, 1, 0, 0]] * 2)
    with torch.no_grad():
        plain = diffusion.sample(model, tuple(cond.shape), model.alpha_bar, steps=3, prediction=model.config.prediction,
                                 model_kwargs={"cond": cond, "cond_mask": mask, "guess": model.guess(cond, mask)},
                                 generator=torch.Generator().manual_seed(4), progress=False)
    torch.testing.assert_close(model.generate(context, 2, seed=4, steps=3, start=1.0, progress=False),
                               diffusion.from_model_range(plain[:, 3:]), rtol=0, atol=0)


@pytest.mark.parametrize("start", [1.0, 0.6, 0.3, 0.01])
def test_network_evaluations_count_the_started_steps(model, start):
    calls = []
    hook = model.net.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        model.generate(data.standard_test_set(1)[:, :3], 2, steps=10, start=start, progress=False)
    finally:
        hook.remove()
    assert model.network_evaluations(3, 2, steps=10, start=start) == len(calls) + 1  # + the predictor's call
    assert len(calls) == len(diffusion.started_timesteps(1000, 10, None if start == 1 else round(start * 999)))


def test_start_errors(model):
    context = data.standard_test_set(1)[:, :3]
    for bad in (0, -0.5, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"start must be in \(0, 1\]"):
            model.generate(context, 2, steps=2, start=bad, progress=False)
    plain = video_diffusion.Model(video_diffusion.PRESETS["nano"]).eval()
    with pytest.raises(ValueError, match="begins from the predictor's guess: this model has no predictor"):
        plain.generate(context, 2, steps=2, start=0.5, progress=False)
    with pytest.raises(ValueError, match="start needs an init of shape"):
        diffusion.sample(plain, (1, 2, 1, 64, 64), plain.alpha_bar, steps=2, start=500, progress=False)
    with pytest.raises(ValueError, match="give the start timestep too"):
        diffusion.sample(plain, (1, 2, 1, 64, 64), plain.alpha_bar, steps=2, init=torch.zeros(1, 2, 1, 64, 64),
                         progress=False)
    with pytest.raises(ValueError, match=r"start must be in \(0, 1\]"):  # checked for the guess alone too
        model.generate(context, 2, sampler="predictor", start=5.0, progress=False)
    with pytest.raises(ValueError, match="use 2 or more"):
        model.generate(context, 2, steps=1, start=0.5, progress=False)


def test_the_default_start_is_the_guess_with_context_and_pure_noise_without(model):
    context = data.standard_test_set(1)[:, :3]
    assert model.default_start(3, 10) == video_diffusion.START_FROM_GUESS < 1
    assert model.default_start(0, 10) == 1.0 and model.default_start(3, 1) == 1.0  # no context; a one-step sampler
    for steps in (2, 3, 4):  # only t = 0 lies below 0.3 of the schedule: the guess would come back as it went in
        assert model.default_start(3, steps) == 1.0
        torch.testing.assert_close(model.generate(context, 2, seed=1, steps=steps, progress=False),
                                   model.generate(context, 2, seed=1, steps=steps, start=1.0, progress=False))
    assert model.default_start(3, 5) == video_diffusion.START_FROM_GUESS  # 250 and 0 run
    one = model.generate(context, 2, seed=1, steps=1, progress=False)  # one step, from pure noise
    torch.testing.assert_close(one, model.generate(context, 2, seed=1, steps=1, start=1.0, progress=False))
    torch.testing.assert_close(model.generate(context, 2, seed=1, steps=10, progress=False),
                               model.generate(context, 2, seed=1, steps=10, start=video_diffusion.START_FROM_GUESS,
                                              progress=False), rtol=0, atol=0)
    assert model.network_evaluations(3, 2, steps=10) == \
        model.network_evaluations(3, 2, steps=10, start=video_diffusion.START_FROM_GUESS) < \
        model.network_evaluations(3, 2, steps=10, start=1.0)
    assert model.network_evaluations(0, 2, steps=10) == model.network_evaluations(0, 2, steps=10, start=1.0)
    empty = torch.zeros(1, 0, 1, 64, 64)  # unconditional: the same as pure noise, step for step
    torch.testing.assert_close(model.generate(empty, 2, seed=2, steps=3, progress=False),
                               model.generate(empty, 2, seed=2, steps=3, start=1.0, progress=False), rtol=0, atol=0)
    plain = video_diffusion.Model(video_diffusion.PRESETS["nano"]).eval()  # no predictor: pure noise
    assert plain.default_start(3, 10) == 1.0


def test_the_explorer_shows_the_whole_chain_from_noise(model):
    from minivid.widgets import DenoiseState

    state = DenoiseState(model, num_clips=1)
    state.update(steps=4)
    trace = state.sample()
    assert trace[0]["t"] == 999 and len(trace) == 5  # 4 steps from pure noise + the final sample
