"""Score a VQ-VAE export: reconstruction error on the standard test set and codebook usage, into its manifest.

    python scripts/evaluate_tokenizer.py runs/gpu/vqvae.pt --clips 256 --device cuda

Reconstruction is the ceiling of every token model built on this tokenizer: no rollout can be
scored better than encode -> decode of the true future.
"""

import argparse
import json

import torch

from minivid import checkpoints, data, metrics


def tokenizer_report(model, clips: torch.Tensor, batch_size: int = 64) -> dict:
    """Per-frame MSE / SSIM / PSNR of encode -> decode on `clips`, and codebook usage over all of them."""
    device = next(model.parameters()).device
    recon = torch.cat([model.reconstruct(clips[i : i + batch_size].to(device)).cpu() for i in range(0, len(clips), batch_size)])
    tokens = torch.cat([model.encode(clips[i : i + batch_size].to(device)).cpu() for i in range(0, len(clips), batch_size)])
    counts = torch.bincount(tokens.flatten(), minlength=model.config.codebook_size).float()
    probs = counts[counts > 0] / counts.sum()
    return {
        "clips": len(clips),
        "mse": metrics.mse_per_frame(recon, clips).mean().item(),
        "ssim": metrics.ssim_per_frame(recon, clips).mean().item(),
        "psnr": metrics.psnr_per_frame(recon, clips).mean().item(),
        "codebook_used": int((counts > 0).sum()),
        "codebook_size": model.config.codebook_size,
        "perplexity": float(torch.exp(-(probs * probs.log()).sum())),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights")
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    model, _ = checkpoints.load_export(args.weights, family="vqvae", device=args.device)
    result = tokenizer_report(model, data.standard_test_set(args.clips))
    checkpoints.record_metrics(args.weights, reconstruction=result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
