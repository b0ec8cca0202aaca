"""Every README command that takes under a minute runs as written, in a fresh folder with `.venv` activated."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Commands that take minutes (or a GPU, or videos): the README says so next to them; everything else must run.
LONG = ("make ", "python -m vlmrl_trl.grpo", "accelerate launch")


def readme_commands() -> list[str]:
    """The shell commands of the README's bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", command).strip()
            if command and not command.startswith("#"):
                commands.append(" ".join(command.split()))
    return commands


def test_the_readme_names_its_long_commands():
    commands = readme_commands()
    assert any(c.startswith("make demo") for c in commands)
    assert "source .venv/bin/activate" in commands  # the venv is activated before the commands that need it
    quick = [c for c in commands if not c.startswith(LONG)]
    assert any(c.startswith("vlmrl-trl predict") for c in quick) and any(c.startswith("vlmrl-trl eval") for c in quick)


def test_quick_readme_commands_run_as_written(tmp_path):
    venv = Path(sys.executable).parent.parent
    (tmp_path / ".venv").symlink_to(venv)
    for name in ("recipes", "docs"):
        (tmp_path / name).symlink_to(REPO / name)
    quick = [c for c in readme_commands() if not c.startswith(LONG)]
    script = "set -euo pipefail\n" + "\n".join(f"echo {shlex.quote('$ ' + c)}\n{c}" for c in quick) + "\n"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"  # nothing of the venv on PATH but what `source .venv/bin/activate` puts there
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for page in ("outputs/try/eval/report.html", "outputs/try/eval/metrics.json", "outputs/try/compare.html"):
        assert (tmp_path / page).is_file(), page
