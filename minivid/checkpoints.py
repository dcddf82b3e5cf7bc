"""Saving and loading weights: atomic run checkpoints, shippable exports, and `pretrained(name)`.

Two kinds of file:

* a run checkpoint (`runs/NAME/checkpoint.pt`): model, EMA, optimizer, step and RNG state, written
  atomically (temporary file, fsync, rename) so a crash never leaves half a file; `Trainer` resumes
  from it exactly.
* a shippable export (`minivid/weights/NAME.pt` + `NAME.json`): the EMA weights in float16 with the
  model's config, loaded weights-only (`torch.load(..., weights_only=True)`); the JSON beside it holds
  the file's SHA-256, the command that trained it, and its measured metrics. `pretrained(name)`
  checks the hash before it trusts a byte.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from importlib import resources
from pathlib import Path

import torch

WEIGHTS_PACKAGE = "minivid.weights"


def atomic_save(obj, path) -> None:
    """torch.save to `path` atomically: write a temporary file beside it, fsync, then rename over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def config_dict(model) -> dict:
    """The model's config as plain data (a frozen dataclass in `model.config`)."""
    cfg = getattr(model, "config", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        raise TypeError(f"{type(model).__name__} has no dataclass `config`; minivid models keep one")
    return dataclasses.asdict(cfg)


def training_only(model) -> tuple:
    """The state-dict prefixes of a model's training-only submodules (e.g. the student's fake score model):
    a run checkpoint keeps them, an export leaves them out, and loading a model drops them."""
    return tuple(f"{name}." for name in getattr(model, "training_only", ()))


def export(model, family: str, path, preset: str | None = None, recipe: str = "", metrics: dict | None = None) -> dict:
    """Write the shippable pair PATH (weights, float16) and PATH with .json (hash, recipe, metrics)."""
    path = Path(path)
    skip = training_only(model)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items() if not k.startswith(skip)}
    payload = {"family": family, "preset": preset, "config": config_dict(model), "state_dict": state}
    atomic_save(payload, path)
    manifest = {
        "family": family,
        "preset": preset,
        "file": path.name,
        "sha256": sha256(path),
        "parameters": sum(p.numel() for name, p in model.named_parameters() if not name.startswith(skip)),
        "recipe": recipe,
        "metrics": metrics or {},
    }
    write_json(manifest, path.with_suffix(".json"))
    return manifest


def load_export(path, family: str | None = None, device="cpu"):
    """An export checked against the manifest beside it (PATH with .json): returns (model, manifest)."""
    path = Path(path)
    info = json.loads(path.with_suffix(".json").read_text())
    return load(path, family=family or info["family"], expected_sha256=info["sha256"], device=device), info


def record_metrics(path, **entries) -> dict:
    """Store `entries` under "metrics" in the manifest beside export PATH, and return the manifest.

    The manifest is read just before it is written, so entries another script added meanwhile are kept.
    The weights file is not touched, so its SHA-256 stays valid.
    """
    manifest_path = Path(path).with_suffix(".json")
    info = json.loads(manifest_path.read_text())
    info.setdefault("metrics", {}).update(entries)
    write_json(info, manifest_path)
    return info


def write_json(obj, path) -> None:
    """JSON written atomically, like every other file minivid writes."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _build(family: str, config: dict):
    from minivid.families import get_family

    mod = get_family(family).load()
    if hasattr(mod, "from_config"):
        return mod.from_config(config)
    return mod.Model(mod.Config(**config))


def load(path, family: str | None = None, expected_sha256: str | None = None, device="cpu"):
    """A model from a shippable export or a run checkpoint (weights only; float32 on `device`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if expected_sha256 is not None:
        actual = sha256(path)
        if actual != expected_sha256:
            raise RuntimeError(
                f"{path.name} does not match its recorded SHA-256 (expected {expected_sha256[:12]}..., "
                f"got {actual[:12]}...); the file is corrupt or was replaced. Reinstall minivid."
            )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"could not read {path.name} as minivid weights: {exc}") from exc
    if "ema" in payload:  # a run checkpoint: take the EMA weights
        payload = {**payload, "state_dict": payload["ema"]}
    if family is not None and payload.get("family") not in (None, family):
        raise ValueError(f"{path.name} holds a {payload.get('family')!r} model, not {family!r}")
    model = _build(payload.get("family") or family, payload["config"])
    skip = training_only(model)  # a run checkpoint may hold them
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()
                           if not k.startswith(skip)})
    return model.to(device).eval()


def available() -> list[str]:
    """Names of the pretrained models that ship with this install."""
    root = resources.files(WEIGHTS_PACKAGE)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def manifest(name: str) -> dict:
    """The JSON beside shipped weights NAME: hash, recipe, parameters, measured metrics."""
    ref = resources.files(WEIGHTS_PACKAGE).joinpath(f"{name}.json")
    if not ref.is_file():
        raise ValueError(f"no pretrained model named {name!r}; shipped: {available()}")
    return json.loads(ref.read_text())


def older_weights_note(name: str, key: str) -> str | None:
    """Whether `metrics[key]` of shipped model NAME was measured on weights older than the shipped ones: the
    manifest's note saying so (each `measured_*` list in its metrics names such entries), or None."""
    metrics = manifest(name)["metrics"]
    for group, keys in metrics.items():
        if group.startswith("measured_") and isinstance(keys, list) and key in keys:
            return metrics.get(f"{group}_note", f"measured on earlier weights ({group.replace('_', ' ')})")
    return None


def resolve(spec: str, device="cpu"):
    """A model from `--init`-style text: a weights or checkpoint path, or 'pretrained:NAME' for a shipped one."""
    if spec.startswith("pretrained:"):
        return pretrained(spec.split(":", 1)[1], device=device)
    return load(spec, device=device)


def pretrained(name: str, device="cpu"):
    """A shipped pretrained model, verified by hash, in eval mode: 'diffusion', 'vqvae', 'autoregressive', 'hybrid', ... (`available()`)."""
    info = manifest(name)
    with resources.as_file(resources.files(WEIGHTS_PACKAGE).joinpath(info["file"])) as path:
        return load(path, family=info["family"], expected_sha256=info["sha256"], device=device)
