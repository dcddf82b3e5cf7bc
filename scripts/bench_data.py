"""Moving MNIST generation throughput (sequences per second), median of repeated batches.

    python scripts/bench_data.py                 # CPU, one thread and all threads
    python scripts/bench_data.py --device cuda   # also the GPU

A benchmark, not a test: it prints figures for the README rather than asserting a time.
"""

import argparse
import json
import statistics
import time

import torch

from minivid import data


def time_batches(batch_size: int, device: str, repeats: int = 15) -> list[float]:
    times = []
    for r in range(repeats + 2):
        idx = torch.arange(r * batch_size, (r + 1) * batch_size, device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        data.moving_mnist(idx, seed=0, split="train", device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[2:]  # the first two warm caches up


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    settings = [("cpu", 1, 64), ("cpu", torch.get_num_threads(), 64), ("cpu", torch.get_num_threads(), 256)]
    if args.device.startswith("cuda"):
        settings += [(args.device, None, 64), (args.device, None, 256), (args.device, None, 1024)]
    all_threads = torch.get_num_threads()
    for device, threads, batch in settings:
        torch.set_num_threads(threads or all_threads)
        med = statistics.median(time_batches(batch, device))
        row = {"device": device if device == "cpu" else torch.cuda.get_device_name(), "threads": threads, "batch": batch,
               "median_batch_seconds": round(med, 4), "sequences_per_second": round(batch / med)}
        rows.append(row)
        print(f"{row['device']:>24} threads={str(threads):>4} batch={batch:>5}: {med * 1e3:8.1f} ms/batch  {batch / med:10.0f} sequences/s")
    torch.set_num_threads(all_threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
