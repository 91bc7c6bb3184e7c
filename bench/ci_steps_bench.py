"""Time every step of the generated CI files, as the tests run them, in a fresh project.

Run from the repository root (dev extras installed)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/ci_steps_bench.py jenkins github

For each CI system named (``jenkins``, ``github``, ``gitlab``): ``shipyard init`` in a
temporary folder, then each shell step of the file ``shipyard ci`` wrote, in order, the way
``tests/templates/test_ci.py`` runs them (install lines skipped: this virtualenv stands for
them; ``docker`` commands checked against what the shipyard command before wrote, not run;
the business value signed off before the deploy's promotion, as a person does). Prints one
line per step: where it sits, its outcome, its wall time and the line itself — the tables
of the README's "Continuous delivery" section.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.templates import test_ci  # noqa: E402  (the tests' runner of CI steps)
from tests.templates.ci_steps import steps  # noqa: E402


def timed(system: str) -> list[tuple[str, str, float, str]]:
    """Every step of ``system``'s file in a new project: (where, outcome, seconds, line)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"shipyard-ci-steps-{system}-"))
    root = tmp / "churn"
    chain = test_ci.Chain(system, root, test_ci.ci_env(tmp))
    made = chain.shell(f"shipyard init {root}", tmp)
    if made.returncode != 0:
        raise RuntimeError(f"shipyard init failed: {made.stderr}")
    rows = []
    for step in steps(system, root):
        if "shipyard models promote" in step.script:
            test_ci.sign_off(chain)
        cwd = (root / step.cwd).resolve()
        for line in step.script.strip().splitlines():
            if test_ci._INSTALL.match(line):
                rows.append((step.where, "skipped (the test's virtualenv)", 0.0, line))
                continue
            command, folder = line, cwd
            if m := test_ci._CD.match(line):
                folder, command = (cwd / m.group(1)).resolve(), m.group(2)
            if command.startswith("docker "):
                chain.check_docker(command, folder)
                rows.append((step.where, "checked (no daemon)", 0.0, line))
                continue
            began = time.perf_counter()
            done = chain.shell(line, cwd)
            rows.append((step.where, f"exit {done.returncode}", time.perf_counter() - began, line))
            if done.returncode != 0:
                raise RuntimeError(f"{step.where}: {line}\n{done.stdout}\n{done.stderr}")
    return rows


def main(argv: list[str]) -> int:
    """Time the systems named (all three by default) and print their tables."""
    for system in argv or ["jenkins", "github", "gitlab"]:
        print(f"\n{system}")
        for where, outcome, seconds, line in timed(system):
            print(f"{where:<28} {outcome:<32} {seconds:5.1f}s  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
