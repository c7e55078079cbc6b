"""The GitHub workflows: what a schema cannot check (`make lint` validates them against GitHub's schema)."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from kclocal.template import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def _load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as a boolean
    return doc


def _steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def _runs(job: dict) -> str:
    return "\n".join(s.get("run", "") for s in _steps(job))


CI, DEPLOY = _load("ci.yml"), _load("deploy.yml")


def test_ci_runs_the_readmes_test_command_on_every_push_and_pull_request():
    assert {"push", "pull_request"} <= set(CI["on"])
    assert "make test" in _runs(CI["jobs"]["test"])
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
    python = next(s for s in _steps(CI["jobs"]["test"]) if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.12" and python["with"]["cache"] == "pip"


def test_deploy_goes_main_tests_build_dev_prod_with_oidc_only():
    assert DEPLOY["on"]["push"]["branches"] == ["main"]
    jobs = DEPLOY["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml" and "workflow_call" in CI["on"]
    assert jobs["build"]["needs"] == "test" and jobs["deploy-dev"]["needs"] == "build"
    assert jobs["deploy-prod"]["needs"] == "deploy-dev"
    assert jobs["deploy-dev"]["environment"] == "dev" and jobs["deploy-prod"]["environment"] == "prod"
    assert DEPLOY["permissions"] == {"contents": "read"}  # the token is granted only where AWS is called
    for name in ("deploy-dev", "deploy-prod"):
        job = jobs[name]
        assert job["permissions"]["id-token"] == "write"
        (creds,) = [s for s in _steps(job) if s.get("uses", "").startswith("aws-actions/configure-aws-credentials")]
        assert set(creds["with"]) >= {"role-to-assume", "aws-region"}
        assert not {"aws-access-key-id", "aws-secret-access-key"} & set(creds["with"])  # no long-lived keys
        runs = _runs(job)
        assert "sam deploy" in runs and "--no-confirm-changeset" in runs and "--role-arn" in runs
        assert re.search(r"kcprice smoke --stack \S+", runs)
    assert "secrets." not in (WORKFLOWS / "deploy.yml").read_text()


def test_each_deploy_targets_a_samconfig_environment_and_its_stack():
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for job, env in (("deploy-dev", "default"), ("deploy-prod", "prod")):
        runs = _runs(DEPLOY["jobs"][job])
        assert f"--config-env {env}" in runs
        stack = config[env]["global"]["parameters"]["stack_name"]
        assert f"kcprice smoke --stack {stack} " in runs + " "
        deploy = config[env]["deploy"]["parameters"]
        assert deploy["confirm_changeset"] is False  # a pipeline cannot answer a prompt
        assert {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"} <= set(deploy["capabilities"].split())
    assert "DeploymentType=AllAtOnce" in config["default"]["deploy"]["parameters"]["parameter_overrides"]
    assert "DeploymentType=Canary" in config["prod"]["deploy"]["parameters"]["parameter_overrides"]


def test_the_overrides_name_only_template_parameters():
    from kclocal import template

    params = set(template.read()["Parameters"])
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for env in ("default", "prod"):
        overrides = config[env]["deploy"]["parameters"]["parameter_overrides"]
        names = set(re.findall(r'(\w+)=(?:"[^"]*"|\S+)', overrides))
        assert names <= params, names - params


def test_actions_are_pinned_and_every_need_and_step_reference_exists():
    for name in ("ci.yml", "deploy.yml"):
        doc = _load(name)
        text = (WORKFLOWS / name).read_text()
        for job_name, job in doc["jobs"].items():
            needs = job.get("needs", [])
            for need in [needs] if isinstance(needs, str) else needs:
                assert need in doc["jobs"], (name, job_name, need)
            ids = {s["id"] for s in _steps(job) if "id" in s}
            for ref in re.findall(r"steps\.([\w-]+)\.", str(job)):
                assert ref in ids, (name, job_name, ref)
            for step in _steps(job):
                if "uses" in step and not step["uses"].startswith("./"):
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]
        for var in re.findall(r"vars\.(\w+)", text):
            assert var in {"AWS_DEPLOY_ROLE_ARN", "AWS_CFN_EXECUTION_ROLE_ARN", "AWS_REGION"}, var


def test_the_oidc_roles_trust_only_this_repository_and_environment():
    from kclocal.template import read

    doc = read(ROOT / "deploy" / "github-oidc.yaml")
    trust = doc["Resources"]["DeployRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    cond = trust["Condition"]["StringEquals"]
    assert cond["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    assert cond["token.actions.githubusercontent.com:sub"] == {
        "Fn::Sub": "repo:${Repository}:environment:${GitHubEnvironment}"
    }
    exec_trust = doc["Resources"]["CloudFormationExecutionRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert exec_trust["Statement"][0]["Principal"] == {"Service": "cloudformation.amazonaws.com"}
    outputs = doc["Outputs"]
    text = (WORKFLOWS / "deploy.yml").read_text()
    assert "AWS_DEPLOY_ROLE_ARN" in outputs["DeployRoleArn"]["Description"] and "vars.AWS_DEPLOY_ROLE_ARN" in text
    assert "AWS_CFN_EXECUTION_ROLE_ARN" in outputs["CloudFormationExecutionRoleArn"]["Description"]


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        ("runs-on: ubuntu-24.04", "runs_on: ubuntu-24.04"),  # a misspelt key
        ("timeout-minutes: 45", "timeout-minutes: soon"),  # a wrong type
    ],
)
def test_the_schema_check_in_make_lint_catches_a_broken_workflow(tmp_path, broken, why):
    bad = tmp_path / "ci.yml"
    bad.write_text((WORKFLOWS / "ci.yml").read_text().replace(broken, why))
    tool = Path(sys.executable).parent / "check-jsonschema"
    args = [str(tool), "--builtin-schema", "vendor.github-workflows"]
    assert subprocess.run([*args, str(WORKFLOWS / "ci.yml")], capture_output=True).returncode == 0
    assert subprocess.run([*args, str(bad)], capture_output=True).returncode != 0
