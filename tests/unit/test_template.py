"""Security and reliability properties of template.yaml, checked on the template itself."""

import json

import pytest

from kclocal import iam, template

SPEC = template.load()
RES = SPEC.raw["Resources"]
FUNCTIONS = {k: v for k, v in RES.items() if v["Type"] == "AWS::Serverless::Function"}


def _arn(key: str = "") -> str:
    return f"arn:aws:s3:::{SPEC.bucket}" + (f"/{key}" if key else "")


def allowed(function: str, action: str, resource: str, **context) -> bool:
    return iam.decide(SPEC.functions[function].policies, action, resource, context).allowed


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_policies_have_no_wildcards(name):
    """No wildcard actions, no '*' resources for data services, S3 objects scoped to one prefix or one key each."""
    for policy in SPEC.functions[name].policies:
        for st in iam.statements([policy]):
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if any(a.split(":")[0] in ("logs", "xray") for a in actions):
                continue  # AWS's managed execution policies (logs, traces)
            assert st["Effect"] == "Allow" and all("*" not in a for a in actions), st
            for r in st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]:
                assert r != "*", st
                if r.startswith("arn:aws:s3:::"):
                    prefix = r.removeprefix(_arn()).lstrip("/")
                    assert "*" not in prefix or (prefix.endswith("/*") and "*" not in prefix[:-2]), r


def test_what_each_function_may_write():
    # The expanded policies (as SAM deploys them), asked the question directly.
    key = {
        "incoming": "incoming/x.csv",
        "pointer": "models/champion.json",
        "drift": "reports/drift/v1/t.json",
        "bad_inventory": "rejected/inventory/houses.csv.json",
        "report": "reports/incoming/x.csv.json",
        "marketplace": "incoming/marketplace/a_b.csv",
        "inventory": "inventory/houses.csv",
        "ingest_report": "reports/ingest/a_b.json",
    }
    writes = {fn: {k for k, v in key.items() if allowed(fn, "s3:PutObject", _arn(v))} for fn in FUNCTIONS}
    assert writes == {
        "PredictFunction": set(),
        "PreTrafficHookFunction": set(),
        "PrecomputeFunction": {"drift", "bad_inventory"},  # its drift report (it failed in AWS without it)
        "RetrainFunction": {"pointer", "drift", "bad_inventory", "report", "ingest_report"},
        "IngestFunction": {"marketplace", "inventory", "ingest_report"},  # its exports, and only those
    }
    assert not any(allowed(fn, "s3:PutObject", _arn("incoming/x.csv")) for fn in FUNCTIONS)  # no retrain loop
    assert not any(allowed(fn, "s3:DeleteObject", _arn("models/champion.json")) for fn in FUNCTIONS)


@pytest.mark.parametrize(
    ("function", "prefixes"),
    [
        ("PredictFunction", ["models/"]),
        ("PrecomputeFunction", ["models/", "inventory/"]),
        ("RetrainFunction", ["incoming/", "datasets/", "models/"]),
        (
            "IngestFunction",
            ["incoming/marketplace/", "reports/incoming/marketplace/", "rejected/incoming/marketplace/"],
        ),
    ],
)
def test_every_function_may_list_what_it_reads_and_nothing_else(function, prefixes):
    """Without s3:ListBucket, S3 answers a GET of a missing key with 403 instead of 404 (a first upload finds no
    champion pointer; precompute finds no inventory): each function may list exactly the prefixes it reads."""
    for prefix in prefixes:
        assert allowed(function, "s3:GetObject", _arn(prefix + "x"))
        assert allowed(function, "s3:ListBucket", _arn(), **{"s3:prefix": prefix + "champion.json"})
    assert not allowed(function, "s3:ListBucket", _arn())  # no listing of the whole bucket
    assert not allowed(function, "s3:ListBucket", _arn(), **{"s3:prefix": "reports/x"})


def test_retrain_may_keep_its_idempotency_records_and_only_those():
    table = SPEC.resolve({"Fn::GetAtt": ["IdempotencyTable", "Arn"]})
    for action in ("GetItem", "PutItem", "UpdateItem", "DeleteItem"):
        assert allowed("RetrainFunction", f"dynamodb:{action}", table)
        assert not allowed("PredictFunction", f"dynamodb:{action}", table)
    assert not allowed("RetrainFunction", "dynamodb:Scan", table)
    assert SPEC.functions["RetrainFunction"].env["IDEMPOTENCY_TABLE"] == SPEC.tables["IdempotencyTable"].name


def test_bucket_name_carries_the_region_and_the_bucket_outlives_the_stack():
    assert RES["DataBucket"]["Properties"]["BucketName"] == {
        "Fn::Sub": "${AWS::StackName}-data-${AWS::AccountId}-${AWS::Region}"
    }
    assert SPEC.raw["Globals"]["Function"]["Environment"]["Variables"]["BUCKET_NAME"] == {
        "Fn::Sub": "${AWS::StackName}-data-${AWS::AccountId}-${AWS::Region}"
    }
    # `sam delete` cannot delete a versioned bucket that holds objects: it keeps it (teardown: kcprice stack)
    assert RES["DataBucket"]["DeletionPolicy"] == RES["DataBucket"]["UpdateReplacePolicy"] == "Retain"


def test_the_endpoint_variable_is_declared_and_empty_in_aws():
    # Declared so `sam local invoke --env-vars` can set it (SAM drops undeclared variables); empty by default,
    # which botocore ignores.
    assert SPEC.raw["Parameters"]["AwsEndpointUrl"]["Default"] == ""
    assert SPEC.raw["Globals"]["Function"]["Environment"]["Variables"]["AWS_ENDPOINT_URL"] == {"Ref": "AwsEndpointUrl"}


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


def test_async_functions_have_failure_destinations_and_run_one_at_a_time():
    for name in ("PrecomputeFunction", "RetrainFunction"):
        cfg = FUNCTIONS[name]["Properties"]["EventInvokeConfig"]
        assert cfg["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["FailureQueue", "Arn"]}
        assert cfg["MaximumRetryAttempts"] == 2
        # SAM gives the role the right to deliver the failure record
        assert allowed(name, "sqs:SendMessage", SPEC.resolve({"Fn::GetAtt": ["FailureQueue", "Arn"]}))
        assert FUNCTIONS[name]["Properties"]["ReservedConcurrentExecutions"] == 1


def test_triggers_cannot_loop():
    triggers = {(n.function, n.prefix) for n in SPEC.notifications}
    assert triggers == {
        ("RetrainFunction", "incoming/"),
        ("PrecomputeFunction", "models/champion"),
        ("PrecomputeFunction", "inventory/houses"),
    }
    for function, prefix in triggers:  # no function may write what starts itself
        assert not allowed(function, "s3:PutObject", _arn(prefix + "x.csv")), (function, prefix)
        assert not allowed(function, "s3:PutObject", _arn(prefix + ".json")), (function, prefix)


def test_sklearn_is_only_where_training_happens():
    layers = {name: fn["Properties"].get("Layers", []) for name, fn in FUNCTIONS.items()}
    assert layers == {
        "PredictFunction": [],
        "PreTrafficHookFunction": [],
        "PrecomputeFunction": [],
        "RetrainFunction": [{"Ref": "TrainLayer"}],
        "IngestFunction": [],
    }
    assert SPEC.raw["Globals"]["Function"]["Layers"] == [{"Ref": "ModelLayer"}]
    lines = (template.ROOT / "layers/model/requirements.txt").read_text().lower().splitlines()
    packages = {line.split("==")[0] for line in lines if line and not line.startswith("#")}
    assert "numpy" in packages and not packages & {"scikit-learn", "scipy", "matplotlib", "joblib"}


def _pins(path) -> dict[str, str]:
    lines = (template.ROOT / path).read_text().lower().splitlines()
    return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))


def test_the_layer_ships_the_boto3_the_code_needs():
    # Conditional writes (PutObject IfMatch / IfNoneMatch) need botocore >= 1.35; Lambda's runtime has whatever
    # AWS last bundled. The layer pins the same versions the tests run with.
    layer, dev = _pins("layers/model/requirements.txt"), _pins("constraints.txt")
    for package in ("boto3", "botocore", "s3transfer", "urllib3", "python-dateutil", "jmespath"):
        assert layer[package] == dev[package], package
    import botocore
    import botocore.session

    assert botocore.__version__ == layer["botocore"]
    put = botocore.session.get_session().get_service_model("s3").operation_model("PutObject").input_shape.members
    assert {"IfMatch", "IfNoneMatch"} <= set(put)


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_the_key_layout_and_the_policies_say_the_same(function):
    """kcprice.layout lists who writes and reads each prefix; the template grants exactly that."""
    from kcprice import layout

    prefixes = [
        layout.INCOMING,
        layout.DATASETS,
        layout.MODELS,
        layout.REPORTS,
        layout.REPORTS + "drift/",
        layout.REJECTED,
        layout.REJECTED + layout.INVENTORY,
        layout.INVENTORY,
    ]
    for prefix in prefixes:
        key = prefix + "x/y.json"
        writes = any(prefix.startswith(p) for p in layout.WRITERS[function])
        reads = any(prefix.startswith(p) for p in layout.READERS[function])
        assert allowed(function, "s3:PutObject", _arn(key)) is writes, (function, prefix)
        assert allowed(function, "s3:GetObject", _arn(key)) is reads, (function, prefix)
        assert allowed(function, "s3:ListBucket", _arn(), **{"s3:prefix": key}) is reads, (function, prefix)


# --- delivery and operations ----------------------------------------------------------------------------------
def _cfn(**parameters) -> dict:
    """The CloudFormation SAM deploys with these parameter overrides (LanguageExtensions resolved first)."""
    return template.translate(parameters={k: str(v) for k, v in parameters.items()})["Resources"]


def _of_type(resources: dict, kind: str) -> dict:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def test_predict_is_served_through_an_alias_that_codedeploy_shifts_with_a_hook_and_alarms():
    res = _cfn(DeploymentType="Canary10Percent5Minutes")
    (alias,) = _of_type(res, "AWS::Lambda::Alias").values()
    assert alias["Properties"]["Name"] == "live"
    hook = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    assert hook["BeforeAllowTrafficHook"] == {"Ref": "PreTrafficHookFunction"}
    (group,) = _of_type(res, "AWS::CodeDeploy::DeploymentGroup").values()
    props = group["Properties"]
    assert props["DeploymentConfigName"] == {
        "Fn::Sub": ["CodeDeployDefault.Lambda${ConfigName}", {"ConfigName": "Canary10Percent5Minutes"}]
    }
    assert props["AutoRollbackConfiguration"]["Enabled"] is True
    assert {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"} <= set(props["AutoRollbackConfiguration"]["Events"])
    alarms = {a["Name"]["Ref"] for a in props["AlarmConfiguration"]["Alarms"]}
    assert alarms == {"PredictAliasErrorsAlarm", "PredictAliasLatencyAlarm", "Api5xxAlarm"}
    # The API invokes the alias, never $LATEST or a fixed version
    body = res["HttpApi"]["Properties"]["Body"]
    uri = body["paths"]["/predict"]["post"]["x-amazon-apigateway-integration"]["uri"]
    assert "PredictFunctionAliaslive" in str(uri)
    assert RES["PredictFunction"]["Properties"]["DeploymentPreference"]["Type"] == {"Ref": "DeploymentType"}
    assert SPEC.raw["Parameters"]["DeploymentType"]["Default"] == "AllAtOnce"


def test_the_alarms_a_deployment_rolls_back_on_watch_the_alias():
    for name in ("PredictAliasErrorsAlarm", "PredictAliasLatencyAlarm"):
        dims = {d["Name"]: d["Value"] for d in RES[name]["Properties"]["Dimensions"]}
        assert dims == {"FunctionName": {"Ref": "PredictFunction"}, "Resource": {"Fn::Sub": "${PredictFunction}:live"}}
    assert RES["PredictAliasLatencyAlarm"]["Properties"]["ExtendedStatistic"] == "p99"
    assert RES["PredictAliasLatencyAlarm"]["Properties"]["Threshold"] == {"Ref": "PredictP99AlarmMs"}
    expr = [m for m in RES["Api5xxAlarm"]["Properties"]["Metrics"] if "Expression" in m]
    assert expr and "errors / requests" in expr[0]["Expression"]


def test_the_pretraffic_hook_may_call_the_new_version_and_report_and_nothing_more():
    hook = SPEC.functions["PreTrafficHookFunction"]
    # SAM's CodeDeploy role may invoke only functions named CodeDeployHook_* (AWSCodeDeployRoleForLambda)
    assert hook.physical.startswith("CodeDeployHook_") and len(hook.physical) <= 64
    predict = SPEC.resolve({"Fn::GetAtt": ["PredictFunction", "Arn"]})
    assert hook.env["TARGET_FUNCTION"].startswith(predict + ":")
    assert allowed("PreTrafficHookFunction", "lambda:InvokeFunction", predict + ":7")
    assert not allowed(
        "PreTrafficHookFunction", "lambda:InvokeFunction", SPEC.resolve({"Fn::GetAtt": ["RetrainFunction", "Arn"]})
    )
    app = "ServerlessDeploymentApplication"
    group = f"arn:aws:codedeploy:us-east-1:{SPEC.account}:deploymentgroup:{app}/PredictFunctionDeploymentGroup"
    assert allowed("PreTrafficHookFunction", "codedeploy:PutLifecycleEventHookExecutionStatus", group)
    assert not allowed("PreTrafficHookFunction", "s3:GetObject", _arn("models/champion.json"))
    assert "DeploymentPreference" not in FUNCTIONS["PreTrafficHookFunction"]["Properties"]  # it is not shifted itself


def test_snapstart_is_a_parameter_off_by_default():
    assert SPEC.raw["Parameters"]["SnapStart"]["Default"] == "false"
    assert _cfn()["PredictFunction"]["Properties"]["SnapStart"] == {"ApplyOn": "None"}
    assert _cfn(SnapStart="true")["PredictFunction"]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert template.load(parameters={"SnapStart": "true"}).functions["PredictFunction"].snap_start
    assert not SPEC.functions["PredictFunction"].snap_start


def test_predict_concurrency_cap_is_optional():
    assert "ReservedConcurrentExecutions" not in _cfn()["PredictFunction"]["Properties"]
    assert _cfn(PredictConcurrencyLimit=50)["PredictFunction"]["Properties"]["ReservedConcurrentExecutions"] == "50"
    assert (
        template.load(parameters={"PredictConcurrencyLimit": "50"}).functions["PredictFunction"].reserved_concurrency
        == 50
    )


def test_cors_origins_are_a_parameter():
    assert "x-amazon-apigateway-cors" not in _cfn()["HttpApi"]["Properties"]["Body"]
    cors = _cfn(CorsAllowedOrigins="https://www.example.com,https://m.example.com")["HttpApi"]["Properties"]["Body"][
        "x-amazon-apigateway-cors"
    ]
    assert cors["allowOrigins"] == ["https://www.example.com", "https://m.example.com"]
    assert {"GET", "POST"} <= set(cors["allowMethods"]) and "content-type" in cors["allowHeaders"]


@pytest.mark.parametrize(("auth", "scheme"), [("NONE", None), ("AWS_IAM", "AWS_IAM"), ("JWT", "Jwt")])
def test_api_authorization_is_a_parameter_and_health_stays_public(auth, scheme):
    params = {"ApiAuth": auth, "JwtIssuer": "https://issuer.example.com", "JwtAudience": "client-1"}
    body = _cfn(**params)["HttpApi"]["Properties"]["Body"]
    security = {(path, m): op.get("security") for path, ops in body["paths"].items() for m, op in ops.items()}
    for route in (("/predict", "post"), ("/houses/{house_id}/price", "get"), ("/model", "get")):
        assert security[route] == ([{scheme: []}] if scheme else None), route
    for route in (("/health", "get"), ("/openapi.json", "get"), ("/swagger", "get")):
        assert security[route] in (None, [{"NONE": []}]), route
    if auth == "JWT":
        jwt = body["components"]["securitySchemes"]["Jwt"]["x-amazon-apigateway-authorizer"]["jwtConfiguration"]
        assert jwt == {"issuer": "https://issuer.example.com", "audience": ["client-1"]}


def test_model_lineage_is_hidden_unless_configured():
    assert SPEC.functions["PredictFunction"].env["EXPOSE_LINEAGE"] == "false"
    from kcprice.registry import public_view

    pointer = {
        "version": "v2",
        "previous_version": "v1",
        "promoted_at": "t",
        "artifact_key": "models/v2/model.npz",
        "reason": {"by": "arn:aws:iam::1:user/op", "why": "rollback"},
    }
    shown, meta = public_view(pointer, {"version": "v2", "lineage": {"source_key": "incoming/x.csv"}})
    assert shown == {"version": "v2", "previous_version": "v1", "promoted_at": "t", "reason": {"why": "rollback"}}
    assert meta == {"version": "v2"}


def test_every_function_logs_to_a_group_with_a_retention():
    for name in FUNCTIONS:
        group = FUNCTIONS[name]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert RES[group]["Type"] == "AWS::Logs::LogGroup"
        assert RES[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert (
        SPEC.raw["Parameters"]["LogRetentionDays"]["Default"]
        in SPEC.raw["Parameters"]["LogRetentionDays"]["AllowedValues"]
    )


def test_operators_are_paged_for_what_needs_them():
    alarms = {k: v["Properties"] for k, v in RES.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == {
        "PredictAliasErrorsAlarm",
        "PredictAliasLatencyAlarm",
        "Api5xxAlarm",
        "FailureQueueAlarm",
        "RefusalsInARowAlarm",
        "InventoryDriftAlarm",
        "UploadDriftAlarm",
    }
    for name, props in alarms.items():
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert props["TreatMissingData"] == "notBreaching", name  # quiet hours are not an outage
    assert alarms["FailureQueueAlarm"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["FailureQueue", "QueueName"]}}
    ]
    # custom metrics: the namespace the functions publish to, and the dimension Powertools adds
    namespace = SPEC.raw["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    for name, metric, service in (
        ("RefusalsInARowAlarm", "UploadsNotPromotedInARow", "retrain"),
        ("InventoryDriftAlarm", "InventoryMaxPSI", "precompute"),
        ("UploadDriftAlarm", "UploadMaxPSI", "retrain"),
    ):
        assert alarms[name]["Namespace"] == namespace and alarms[name]["MetricName"] == metric
        assert alarms[name]["Dimensions"] == [{"Name": "service", "Value": service}]
    # the drift alarm and the drift reports use one threshold
    assert alarms["InventoryDriftAlarm"]["Threshold"] == {"Ref": "DriftAlarmPsi"}
    for fn in ("PrecomputeFunction", "RetrainFunction"):
        assert FUNCTIONS[fn]["Properties"]["Environment"]["Variables"]["PSI_THRESHOLD"] == {"Ref": "DriftAlarmPsi"}
    assert RES["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"


def test_the_metric_names_the_alarms_watch_are_the_ones_the_functions_publish():
    code = "".join((template.ROOT / "functions" / f / "app.py").read_text() for f in ("retrain", "precompute"))
    for metric in ("UploadsNotPromotedInARow", "InventoryMaxPSI", "UploadMaxPSI"):
        assert f'"{metric}"' in code, metric


def test_the_sam_local_env_file_names_every_function_as_the_template_does():
    """`sam local invoke --env-vars events/env.sam-local.json` (make sam-local checks it too, but needs Docker)."""
    from kclocal.samlocal import ENV_FILE, env_vars, local_spec

    assert json.loads(ENV_FILE.read_text()) == env_vars(local_spec("http://127.0.0.1:4566"))
    assert set(json.loads(ENV_FILE.read_text())) == set(FUNCTIONS)


def test_parameters_that_reach_a_function_environment_resolve_under_sam_local():
    """`sam local` stringifies an environment value it could not resolve to "" (a float parameter default is one
    such: found by make sam-local), so each parameter a function reads has a string or integer default."""
    import re

    text = (template.ROOT / "template.yaml").read_text()
    referenced = set()
    for fn in [SPEC.raw["Globals"]["Function"], *FUNCTIONS.values()]:
        env = (fn.get("Properties", fn)).get("Environment", {}).get("Variables", {})
        referenced |= {v["Ref"] for v in env.values() if isinstance(v, dict) and "Ref" in v}
    params = SPEC.raw["Parameters"]
    assert "DriftAlarmPsi" in referenced and "ModelTtlSeconds" in referenced
    for name in referenced & set(params):
        assert not isinstance(params[name].get("Default"), float), name
    assert re.search(r"DriftAlarmPsi:\n    Type: Number\n    Default: \"0.2\"", text)


def test_the_ingest_function_joins_the_databases_vpc_and_reads_only_its_secret_when_configured():
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kc-price/marketplace-AbCdEf"
    on = template.translate(
        parameters={
            "MarketplaceSecretArn": arn,
            "MarketplaceSubnetIds": "subnet-1,subnet-2",
            "MarketplaceSecurityGroupIds": "sg-1",
        }
    )["Resources"]
    off = template.translate()["Resources"]
    fn_on, fn_off = on["IngestFunction"]["Properties"], off["IngestFunction"]["Properties"]
    assert fn_on["VpcConfig"] == {"SubnetIds": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}
    assert "VpcConfig" not in fn_off

    # Lambda creates the function's network interfaces with its role: the VPC access policy only in a VPC.
    def managed(res) -> str:
        return json.dumps(res["IngestFunctionRole"]["Properties"].get("ManagedPolicyArns", []))

    assert "service-role/AWSLambdaVPCAccessExecutionRole" in managed(on)
    assert "AWSLambdaVPCAccessExecutionRole" not in managed(off)
    secret_statements = [
        st
        for pol in on["IngestFunctionRole"]["Properties"]["Policies"]
        for st in pol["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in st["Action"]
    ]
    assert [st["Resource"] for st in secret_statements] == [arn]

    def schedule(res) -> list[str]:  # the schedule runs only with a database to read
        return [r["Properties"]["State"] for k, r in res.items() if r["Type"] == "AWS::Events::Rule" and "Ingest" in k]

    assert schedule(on) == ["ENABLED"] and schedule(off) == ["DISABLED"]
