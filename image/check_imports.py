"""Build-time check of the URM image: every package imports at its pinned version, no GPU."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

# distribution -> (import name, version)
PINS = {
    "torch": ("torch", "2.4.0"),
    "wandb": ("wandb", "0.17.7"),
    "einops": ("einops", "0.8.0"),
    "tqdm": ("tqdm", "4.66.5"),
    "hydra-core": ("hydra", "1.3.2"),
    "omegaconf": ("omegaconf", "2.3.0"),
    "numba": ("numba", "0.60.0"),
    "triton": ("triton", "3.0.0"),
    "pydantic": ("pydantic", "2.8.2"),
    "argdantic": ("argdantic", "1.3.3"),
    "coolname": ("coolname", "2.2.0"),
    "packaging": ("packaging", "24.1"),
    "ninja": ("ninja", "1.11.1.1"),
    "flash-attn": ("flash_attn", "2.8.3"),
    "adam-atan2": ("adam_atan2", "0.0.3"),
}


def main() -> int:
    problems = []
    for dist, (module, version) in PINS.items():
        try:
            importlib.import_module(module)
            found = importlib.metadata.version(dist)
        except Exception as exc:  # report every failure, then fail once
            problems.append(f"{dist}: cannot import {module}: {exc}")
            continue
        if not found.startswith(version):
            problems.append(f"{dist}: version {found}, expected {version}")
    import torch

    if not torch.version.cuda or not torch.version.cuda.startswith("12.4"):
        problems.append(f"torch was built for CUDA {torch.version.cuda}, expected 12.4")
    for line in problems:
        print(f"check_imports: {line}", file=sys.stderr)
    if not problems:
        print(f"check_imports: {len(PINS)} packages import at their pinned versions")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
