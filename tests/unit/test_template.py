"""Security and reliability properties of template.yaml, checked on the template itself."""

import pytest

from kclocal import template

SPEC = template.load()
RES = SPEC.raw["Resources"]
FUNCTIONS = {k: v for k, v in RES.items() if v["Type"] == "AWS::Serverless::Function"}
# SAM policy templates allowed, each scoped to one named resource.
POLICY_TEMPLATES = {"DynamoDBReadPolicy": "TableName", "DynamoDBWritePolicy": "TableName"}


def statements(fn: dict):
    for policy in fn["Properties"].get("Policies", []):
        if "Statement" in policy:
            yield from policy["Statement"]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_policies_have_no_wildcards(name):
    fn = FUNCTIONS[name]
    for policy in fn["Properties"].get("Policies", []):
        if "Statement" not in policy:
            ((tpl, args),) = policy.items()
            assert tpl in POLICY_TEMPLATES and args[POLICY_TEMPLATES[tpl]] == {"Ref": "PredictionsTable"}, policy
    for st in statements(fn):
        assert st["Effect"] == "Allow"
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert all("*" not in a for a in actions), st
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for r in resources:
            arn = r["Fn::Sub"] if isinstance(r, dict) else r
            assert arn != "*" and arn.startswith("arn:aws:s3:::${AWS::StackName}-data-${AWS::AccountId}/"), r
            prefix = arn.split("/", 1)[1]
            assert prefix.endswith("/*") and "*" not in prefix[:-2], r  # scoped to one prefix


def test_only_retrain_writes_models_and_only_through_prefixes():
    writes = {
        name: [r["Fn::Sub"].split("/", 1)[1] for st in statements(fn) if "s3:PutObject" in st["Action"]
               for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])]
        for name, fn in FUNCTIONS.items()
    }  # fmt: skip
    assert writes["PredictFunction"] == []
    assert writes["PrecomputeFunction"] == ["rejected/inventory/*"]
    assert "incoming/*" not in writes["RetrainFunction"]  # retrain can never trigger itself


def test_bucket_is_private_encrypted_and_tls_only():
    props = RES["DataBucket"]["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values()) and len(props["PublicAccessBlockConfiguration"]) == 4
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    (deny,) = RES["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_table_is_encrypted_with_ttl_and_backups():
    props = RES["PredictionsTable"]["Properties"]
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_api_is_throttled():
    routes = RES["HttpApi"]["Properties"]["DefaultRouteSettings"]
    assert routes["ThrottlingRateLimit"] > 0 and routes["ThrottlingBurstLimit"] > 0


def test_async_functions_have_failure_destinations_and_retrain_runs_alone():
    for name in ("PrecomputeFunction", "RetrainFunction"):
        cfg = FUNCTIONS[name]["Properties"]["EventInvokeConfig"]
        assert cfg["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["FailureQueue", "Arn"]}
        assert cfg["MaximumRetryAttempts"] == 2
    assert FUNCTIONS["RetrainFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1


def test_triggers_cannot_loop():
    prefixes = {n.function: n.prefix for n in SPEC.notifications}
    assert prefixes == {"RetrainFunction": "incoming/", "PrecomputeFunction": "models/champion"}


def test_sklearn_is_only_where_training_happens():
    layers = {name: fn["Properties"].get("Layers", []) for name, fn in FUNCTIONS.items()}
    assert layers == {"PredictFunction": [], "PrecomputeFunction": [], "RetrainFunction": [{"Ref": "TrainLayer"}]}
    assert SPEC.raw["Globals"]["Function"]["Layers"] == [{"Ref": "ModelLayer"}]
    lines = (template.ROOT / "layers/model/requirements.txt").read_text().lower().splitlines()
    packages = {line.split("==")[0] for line in lines if line and not line.startswith("#")}
    assert "numpy" in packages and not packages & {"scikit-learn", "scipy", "matplotlib", "joblib"}
