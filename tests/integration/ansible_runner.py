"""Run ansible-playbook / ansible ad-hoc from the repo root, the way a user does.

The repo's ansible.cfg makes the repository itself the collection urm.training. Secrets are never
written to files here: pass them through ``env`` and read them in the play with
``lookup('ansible.builtin.env', ...)``.

stdout/stderr are the default callback's text (at the requested verbosity); the per-task results
come from a small recorder callback (ansible-core 2.21 ships no json callback), which sees exactly
what any callback sees, i.e. after no_log censoring.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INVENTORY = {
    "all": {
        "hosts": {
            "localhost": {
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            }
        }
    }
}


RECORDER = """
import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "urm_recorder"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._records = []

    def _record(self, status, result):
        data = getattr(result, "result", None)
        if data is None:
            data = result._result
        if status == "failed":
            # ansible-core 2.19+ keeps the failure flag outside the result dict.
            data = {**data, "failed": True}
        self._records.append({
            "task": result.task.get_name(),
            "action": result.task.action,
            "host": result.host.get_name(),
            "status": status,
            "result": data,
        })

    def v2_runner_on_ok(self, result, **kwargs):
        self._record("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record("failed", result)

    def v2_runner_on_skipped(self, result, **kwargs):
        self._record("skipped", result)

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._record("unreachable", result)

    def v2_playbook_on_stats(self, stats):
        self._flush()

    def _flush(self):
        with open(os.environ["URM_RECORDER_FILE"], "w") as handle:
            json.dump(self._records, handle, default=str)

    def __del__(self):
        try:
            self._flush()
        except Exception:
            pass
"""


@dataclass
class RunResult:
    rc: int
    stdout: str
    stderr: str
    command: list[str]
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)
    recorder_text: str = field(default="", repr=False)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def task_results(self, host: str = "localhost") -> list[tuple[str, dict[str, Any]]]:
        """(task name, host result) for every task run on ``host``, in order."""
        return [(r["task"], r["result"]) for r in self.records if r["host"] == host]

    def task(self, name: str, host: str = "localhost") -> dict[str, Any]:
        """The host result of the last task called ``name`` (role tasks: with or without prefix)."""
        found = [r for n, r in self.task_results(host) if n == name or n.endswith(f" : {name}")]
        if not found:
            names = [n for n, _ in self.task_results(host)]
            raise KeyError(f"no task {name!r} in the run; tasks: {names}\n{self.output[-3000:]}")
        return found[-1]

    @property
    def adhoc(self) -> dict[str, Any]:
        """The host result of an ad-hoc run."""
        results = self.task_results()
        if not results:
            raise KeyError(f"no result in the run:\n{self.output[-3000:]}")
        return results[-1][1]


def _env(extra: Mapping[str, str] | None, workdir: Path) -> dict[str, str]:
    plugin_dir = workdir / "callback_plugins"
    plugin_dir.mkdir(exist_ok=True)
    (plugin_dir / "urm_recorder.py").write_text(RECORDER)
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
            "ANSIBLE_CALLBACK_PLUGINS": str(plugin_dir),
            "ANSIBLE_CALLBACKS_ENABLED": "urm_recorder",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "URM_RECORDER_FILE": str(workdir / "records.json"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "0",
            "ANSIBLE_LOCAL_TEMP": str(Path(tempfile.gettempdir()) / "urm-ansible-local"),
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    # K8S_AUTH_* from the caller's shell would silently change the cluster the test talks to.
    for key in list(env):
        if key.startswith("K8S_AUTH_") and not (extra and key in extra):
            del env[key]
    env.update(extra or {})
    return env


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> RunResult:
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    records_file = Path(env["URM_RECORDER_FILE"])
    text = records_file.read_text() if records_file.exists() else "[]"
    return RunResult(proc.returncode, proc.stdout, proc.stderr, cmd, json.loads(text), text)


def _inventory(workdir: Path) -> Path:
    path = workdir / "inventory.yml"
    path.write_text(yaml.safe_dump(INVENTORY))
    return path


def run_playbook(
    playbook: Sequence[Mapping[str, Any]] | str | Path,
    *,
    env: Mapping[str, str] | None = None,
    extra_vars: Mapping[str, Any] | None = None,
    check: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    timeout: float = 300,
    inventory: str | Path | None = None,
) -> RunResult:
    """Run a playbook given as a path or as a list of plays (written to a temp dir), on the
    test inventory (localhost) or on ``inventory``, e.g. the repository's inventories/ice.

    ``extra_vars`` go on the command line as JSON: never put secrets there; use ``env``.
    """
    with tempfile.TemporaryDirectory(prefix="urm-play-") as tmp:
        workdir = Path(tmp)
        if isinstance(playbook, (str, Path)):
            path = Path(playbook)
        else:
            path = workdir / "play.yml"
            path.write_text(yaml.safe_dump(list(playbook), sort_keys=False))
        hosts = str(inventory) if inventory else str(_inventory(workdir))
        cmd = [str(BIN / "ansible-playbook"), "-i", hosts, str(path)]
        if extra_vars:
            cmd += ["-e", json.dumps(dict(extra_vars))]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        return _run(cmd, _env(env, workdir), timeout)


def run_module(
    module: str,
    args: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    timeout: float = 300,
) -> RunResult:
    """Run one module ad hoc on localhost. ``args`` may hold Jinja, e.g. an env lookup."""
    with tempfile.TemporaryDirectory(prefix="urm-adhoc-") as tmp:
        workdir = Path(tmp)
        cmd = [
            str(BIN / "ansible"),
            "-i",
            str(_inventory(workdir)),
            "localhost",
            "-m",
            module,
            "-a",
            json.dumps(dict(args)),
        ]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        return _run(cmd, _env(env, workdir), timeout)
