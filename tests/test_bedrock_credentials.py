"""Bedrock's AWS credential chain through the real gateway: environment, shared credentials file with AWS_PROFILE,
the container credentials endpoint (faked on 127.0.0.1) with refresh before expiry, one retry after a 403
ExpiredTokenException, a wrong secret refused by the signature check, and no credentials at all."""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from conftest import openai_client, start_gateway
from fakes.bedrock_upstream import FakeBedrock, start_fake_bedrock
from fakes.server import serve_in_thread
from test_bedrock import AWS_ENV_VARS, aws_env, user


def config(base_url: str) -> str:
    return f"""
llm:
  models:
  - name: "*"
    provider: bedrock
    params: {{model: "anthropic.claude-3-haiku-20240307-v1:0", awsRegion: eu-west-3, baseUrl: "{base_url}"}}
"""


@dataclass
class ContainerEndpoint:
    """The ECS/EKS container credentials endpoint: each call issues a new key pair, registered with the fake."""

    bedrock: FakeBedrock
    lifetime: float = 3600.0
    issued: list[str] = field(default_factory=list)
    url: str = ""
    authorization: list[str | None] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.authorization.append(request.headers.get("Authorization"))
        number = len(self.issued) + 1
        access_key = f"ASIACONTAINER{number:04d}"
        self.issued.append(access_key)
        secret, token = f"container-secret-{number}", f"container-token-{number}"
        self.bedrock.keys[access_key] = (secret, token)
        expiration = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=self.lifetime)
        return web.json_response(
            {
                "AccessKeyId": access_key,
                "SecretAccessKey": secret,
                "Token": token,
                "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )


def start_container_endpoint(bedrock: FakeBedrock, lifetime: float) -> tuple[ContainerEndpoint, Callable[[], None]]:
    endpoint = ContainerEndpoint(bedrock, lifetime)
    app = web.Application()
    app.router.add_get("/v2/credentials/test", endpoint.handle)
    root, stop = serve_in_thread(app, "fake-container-credentials")
    endpoint.url = root + "/v2/credentials/test"
    return endpoint, stop


@pytest.fixture
def fake() -> Iterator[FakeBedrock]:
    fake, stop = start_fake_bedrock(region="eu-west-3")
    yield fake
    stop()


def no_files(tmp_path: Path) -> dict[str, str]:
    """No shared files from the machine running the tests."""
    return {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "absent-credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "absent-config"),
    }


def credential_of(fake: FakeBedrock) -> str:
    return fake.last().headers["Authorization"].split("Credential=")[1].split("/")[0]


def test_shared_credentials_file_with_aws_profile(fake: FakeBedrock, tmp_path: Path) -> None:
    fake.keys["AKIDPROFILEDEV"] = ("dev-secret", None)
    (tmp_path / "credentials").write_text(
        "[default]\naws_access_key_id = AKIDWRONGDEFAULT\naws_secret_access_key = nope\n\n"
        "[dev]\naws_access_key_id = AKIDPROFILEDEV\naws_secret_access_key = dev-secret\n"
    )
    (tmp_path / "config").write_text("[profile dev]\nregion = eu-west-3\n")
    env = aws_env(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_PROFILE="dev",
    )
    gateway = start_gateway(config(fake.base_url), tmp_path, env=env, unset=AWS_ENV_VARS)
    try:
        client = openai_client(gateway.url)
        assert client.chat.completions.create(model="m", messages=user("Hi")).choices[0].message.content
        assert credential_of(fake) == "AKIDPROFILEDEV"
        assert "X-Amz-Security-Token" not in fake.last().headers
        assert "SignedHeaders=content-type;host;x-amz-date," in fake.last().headers["Authorization"]
    finally:
        gateway.stop()


def test_wrong_secret_is_refused_by_the_signature_check_without_retry(fake: FakeBedrock, tmp_path: Path) -> None:
    fake.keys["AKIDENV"] = ("right-secret", None)
    env = aws_env(AWS_ACCESS_KEY_ID="AKIDENV", AWS_SECRET_ACCESS_KEY="wrong-secret", **no_files(tmp_path))
    gateway = start_gateway(config(fake.base_url), tmp_path, env=env, unset=AWS_ENV_VARS)
    try:
        client = openai_client(gateway.url)
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model="m", messages=user("Hi"))
        assert "signature we calculated does not match" in caught.value.message
        assert fake.refused == ["InvalidSignatureException"]
        assert "wrong-secret" not in gateway.log()
    finally:
        gateway.stop()


def test_no_credentials_is_a_clear_error(fake: FakeBedrock, tmp_path: Path) -> None:
    gateway = start_gateway(config(fake.base_url), tmp_path, env=aws_env(**no_files(tmp_path)), unset=AWS_ENV_VARS)
    try:
        client = openai_client(gateway.url)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="m", messages=user("Hi"))
        assert "No AWS credentials found" in caught.value.message
        assert fake.requests == []
    finally:
        gateway.stop()


def container_gateway(fake: FakeBedrock, tmp_path: Path, lifetime: float) -> tuple[Any, ContainerEndpoint, Any]:
    endpoint, stop = start_container_endpoint(fake, lifetime)
    env = aws_env(
        AWS_CONTAINER_CREDENTIALS_FULL_URI=endpoint.url,
        AWS_CONTAINER_AUTHORIZATION_TOKEN="container-auth-token",
        **no_files(tmp_path),
    )
    gateway = start_gateway(config(fake.base_url), tmp_path, env=env, unset=AWS_ENV_VARS)
    return gateway, endpoint, stop


def test_container_credentials_are_cached_then_renewed_once_after_expired_token(
    fake: FakeBedrock, tmp_path: Path
) -> None:
    gateway, endpoint, stop = container_gateway(fake, tmp_path, lifetime=3600)
    try:
        client = openai_client(gateway.url)
        for _ in range(3):
            client.chat.completions.create(model="m", messages=user("Hi"))
        first = credential_of(fake)
        assert first in endpoint.issued
        assert fake.last().headers["X-Amz-Security-Token"] == fake.keys[first][1]
        calls = len(endpoint.issued)
        assert calls <= 2  # resolved once (botocore may fetch twice while loading); cached afterwards
        assert set(endpoint.authorization) == {"container-auth-token"}

        # The service now says the token expired (revoked early): one 403, new credentials, one retry.
        fake.expired_keys.add(first)
        completion = client.chat.completions.create(model="m", messages=user("Hi"))
        assert completion.choices[0].message.content == "Hello from Bedrock"
        assert fake.refused == ["ExpiredTokenException"]
        assert credential_of(fake) not in (first,)
        assert len(endpoint.issued) > calls

        # Requests refused together renew once and all retry with the new credentials.
        fake.expired_keys.add(credential_of(fake))
        issued = len(endpoint.issued)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: client.chat.completions.create(model="m", messages=user("Hi")), range(4)))
        assert all(a.choices[0].message.content == "Hello from Bedrock" for a in answers)
        assert len(endpoint.issued) - issued <= 2  # one resolution (botocore may fetch twice while loading)
        del fake.refused[1:]

        # A stream goes through the same path.
        fake.expired_keys.add(credential_of(fake))
        chunks = list(client.chat.completions.create(model="m", messages=user("Hi"), stream=True))
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert fake.refused == ["ExpiredTokenException", "ExpiredTokenException"]
    finally:
        gateway.stop()
        stop()


def test_short_lived_container_credentials_are_refreshed_before_they_expire(fake: FakeBedrock, tmp_path: Path) -> None:
    gateway, endpoint, stop = container_gateway(fake, tmp_path, lifetime=4)
    try:
        client = openai_client(gateway.url)
        client.chat.completions.create(model="m", messages=user("Hi"))
        first = credential_of(fake)
        issued = len(endpoint.issued)
        # Past the first key's expiry: the service refuses it from now on, so it must not be sent again.
        time.sleep(4.5)
        fake.expired_keys.add(first)
        client.chat.completions.create(model="m", messages=user("Hi"))
        assert credential_of(fake) != first
        assert len(endpoint.issued) > issued
        assert fake.refused == []  # refreshed ahead of use, not after a refusal
    finally:
        gateway.stop()
        stop()


def test_bearer_token_from_the_environment_wins_over_sigv4(fake: FakeBedrock, tmp_path: Path) -> None:
    fake.api_keys.add("ABSKfrom-the-environment")
    fake.keys["AKIDENV"] = ("secret", None)
    env = aws_env(
        AWS_BEARER_TOKEN_BEDROCK="ABSKfrom-the-environment",
        AWS_ACCESS_KEY_ID="AKIDENV",
        AWS_SECRET_ACCESS_KEY="secret",
        **no_files(tmp_path),
    )
    gateway = start_gateway(config(fake.base_url), tmp_path, env=env, unset=AWS_ENV_VARS)
    try:
        client = openai_client(gateway.url)
        client.chat.completions.create(model="m", messages=user("Hi"))
        assert fake.last().headers["Authorization"] == "Bearer ABSKfrom-the-environment"
        assert "ABSKfrom-the-environment" not in gateway.log()
    finally:
        gateway.stop()


def test_web_identity_token_file_and_role(fake: FakeBedrock, tmp_path: Path) -> None:
    """AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (EKS IRSA): botocore calls STS AssumeRoleWithWebIdentity, faked
    here through AWS_ENDPOINT_URL_STS."""
    calls: list[dict[str, str]] = []

    async def sts(request: web.Request) -> web.Response:
        calls.append(dict(await request.post()))  # type: ignore[arg-type]
        fake.keys["ASIAWEBIDENTITY"] = ("web-secret", "web-token")
        expiration = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        body = f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>ASIAWEBIDENTITY</AccessKeyId>
      <SecretAccessKey>web-secret</SecretAccessKey>
      <SessionToken>web-token</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
    <SubjectFromWebIdentityToken>system:serviceaccount:default:gateway</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/gateway/session</Arn>
      <AssumedRoleId>AROAEXAMPLE:session</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>sts-req-1</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""
        return web.Response(text=body, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/", sts)
    sts_url, stop = serve_in_thread(app, "fake-sts")
    (tmp_path / "token").write_text("eyJhbGciOiJSUzI1NiJ9.web-identity-token.sig")
    env = aws_env(
        AWS_WEB_IDENTITY_TOKEN_FILE=str(tmp_path / "token"),
        AWS_ROLE_ARN="arn:aws:iam::123456789012:role/gateway",
        AWS_ROLE_SESSION_NAME="gateway-session",
        AWS_ENDPOINT_URL_STS=sts_url,
        AWS_DEFAULT_REGION="eu-west-3",
        **no_files(tmp_path),
    )
    gateway = start_gateway(config(fake.base_url), tmp_path, env=env, unset=(*AWS_ENV_VARS, "AWS_REGION"))
    try:
        client = openai_client(gateway.url)
        client.chat.completions.create(model="m", messages=user("Hi"))
        assert credential_of(fake) == "ASIAWEBIDENTITY"
        assert fake.last().headers["X-Amz-Security-Token"] == "web-token"
        assert calls[0]["Action"] == "AssumeRoleWithWebIdentity"
        assert calls[0]["WebIdentityToken"] == "eyJhbGciOiJSUzI1NiJ9.web-identity-token.sig"
        assert calls[0]["RoleArn"] == "arn:aws:iam::123456789012:role/gateway"
    finally:
        gateway.stop()
        stop()


def test_instance_metadata_imdsv2(fake: FakeBedrock, tmp_path: Path) -> None:
    """EC2 instance metadata (IMDSv2: a session token first, then the role's credentials), faked through
    AWS_EC2_METADATA_SERVICE_ENDPOINT."""
    seen: list[str] = []

    async def token(request: web.Request) -> web.Response:
        seen.append(f"PUT {request.path} ttl={request.headers.get('X-aws-ec2-metadata-token-ttl-seconds')}")
        return web.Response(text="imds-session-token")

    async def role(request: web.Request) -> web.Response:
        seen.append(f"GET {request.path} token={request.headers.get('X-aws-ec2-metadata-token')}")
        return web.Response(text="gateway-role")

    async def credentials(request: web.Request) -> web.Response:
        seen.append(f"GET {request.path} token={request.headers.get('X-aws-ec2-metadata-token')}")
        fake.keys["ASIAINSTANCE"] = ("instance-secret", "instance-token")
        expiration = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=6)
        return web.json_response(
            {
                "Code": "Success",
                "Type": "AWS-HMAC",
                "AccessKeyId": "ASIAINSTANCE",
                "SecretAccessKey": "instance-secret",
                "Token": "instance-token",
                "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )

    app = web.Application()
    app.router.add_put("/latest/api/token", token)
    app.router.add_get("/latest/meta-data/iam/security-credentials/", role)
    app.router.add_get("/latest/meta-data/iam/security-credentials/gateway-role", credentials)
    imds_url, stop = serve_in_thread(app, "fake-imds")
    env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds_url + "/", **no_files(tmp_path)}
    gateway = start_gateway(
        config(fake.base_url), tmp_path, env=env, unset=(*AWS_ENV_VARS, "AWS_EC2_METADATA_DISABLED")
    )
    try:
        client = openai_client(gateway.url)
        client.chat.completions.create(model="m", messages=user("Hi"))
        assert credential_of(fake) == "ASIAINSTANCE"
        assert fake.last().headers["X-Amz-Security-Token"] == "instance-token"
        assert seen[0].startswith("PUT /latest/api/token")
        assert "token=imds-session-token" in seen[-1]
    finally:
        gateway.stop()
        stop()


def test_sso_profile_with_a_cached_token(fake: FakeBedrock, tmp_path: Path) -> None:
    """An IAM Identity Center (SSO) profile after `aws sso login`: the cached token is exchanged for role credentials
    (the SSO portal's GetRoleCredentials, faked through AWS_ENDPOINT_URL_SSO)."""
    seen: list[tuple[dict[str, str], str | None]] = []

    async def role_credentials(request: web.Request) -> web.Response:
        seen.append((dict(request.query), request.headers.get("x-amz-sso_bearer_token")))
        fake.keys["ASIASSO"] = ("sso-secret", "sso-token")
        expiration = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        return web.json_response(
            {
                "roleCredentials": {
                    "accessKeyId": "ASIASSO",
                    "secretAccessKey": "sso-secret",
                    "sessionToken": "sso-token",
                    "expiration": int(expiration.timestamp() * 1000),
                }
            }
        )

    app = web.Application()
    app.router.add_get("/federation/credentials", role_credentials)
    sso_url, stop = serve_in_thread(app, "fake-sso")
    (tmp_path / "config").write_text(
        "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = Gateway\n"
        "region = eu-west-3\n\n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n"
        "sso_region = eu-west-3\n"
    )
    cache = tmp_path / "home" / ".aws" / "sso" / "cache"
    cache.mkdir(parents=True)
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=8)
    (cache / (hashlib.sha1(b"corp").hexdigest() + ".json")).write_text(
        json.dumps(
            {
                "startUrl": "https://corp.awsapps.com/start",
                "region": "eu-west-3",
                "accessToken": "sso-access-token",
                "expiresAt": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    )
    env = aws_env(
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "absent-credentials"),
        AWS_PROFILE="dev",
        AWS_ENDPOINT_URL_SSO=sso_url,
        HOME=str(tmp_path / "home"),
    )
    gateway = start_gateway(config(fake.base_url), tmp_path, env=env, unset=AWS_ENV_VARS)
    try:
        client = openai_client(gateway.url)
        client.chat.completions.create(model="m", messages=user("Hi"))
        assert credential_of(fake) == "ASIASSO"
        assert seen == [({"account_id": "123456789012", "role_name": "Gateway"}, "sso-access-token")]
    finally:
        gateway.stop()
        stop()


_RESOLVE_IN_A_FRESH_PROCESS = """
import sys
from agentgateway.providers.bedrock import _resolve
_, ours = _resolve(None)
native = "botocore" in sys.modules
import botocore.session
theirs = botocore.session.Session().get_credentials().get_frozen_credentials()
print(ours.access_key, ours.secret_key, ours.token, ours.expiry is None, native,
      theirs.access_key, theirs.secret_key, theirs.token)
"""


@pytest.mark.parametrize(
    "tokens",
    [{}, {"AWS_SESSION_TOKEN": "session"}, {"AWS_SECURITY_TOKEN": "security", "AWS_SESSION_TOKEN": "session"}],
)
def test_static_keys_in_the_environment_are_read_as_botocore_reads_them_without_importing_it(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    """Worker memory (issue 22): botocore is ~10 MB once imported; keys in the environment never need it. The
    same credentials as botocore's chain resolves (its first link), token precedence included."""
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(aws_env(AWS_ACCESS_KEY_ID="AKIDSTATIC", AWS_SECRET_ACCESS_KEY="static-secret", **tokens))
    env.update(no_files(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", _RESOLVE_IN_A_FRESH_PROCESS], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    token = tokens.get("AWS_SECURITY_TOKEN") or tokens.get("AWS_SESSION_TOKEN") or "None"
    assert out == ["AKIDSTATIC", "static-secret", token, "True", "False", "AKIDSTATIC", "static-secret", token]


def test_keys_with_an_expiration_in_the_environment_still_go_through_botocore(tmp_path: Path) -> None:
    """botocore makes such keys refreshable (AWS_CREDENTIAL_EXPIRATION): their expiry must reach the cache."""
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        aws_env(
            AWS_ACCESS_KEY_ID="AKIDEXP", AWS_SECRET_ACCESS_KEY="s", AWS_CREDENTIAL_EXPIRATION="2099-01-01T00:00:00Z"
        )
    )
    env.update(no_files(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", _RESOLVE_IN_A_FRESH_PROCESS], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[:5] == ["AKIDEXP", "s", "None", "False", "True"]
