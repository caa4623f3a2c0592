"""The core's SigV4 signer against botocore's ``SigV4Auth``: the same Authorization header, byte for byte, for many
generated requests (model ids with ':' '/' '%' and non-ASCII, session tokens or none, bodies, regions, hosts, dates
across day boundaries, the signing-key cache reused and invalidated)."""

from __future__ import annotations

import datetime
import random
from unittest import mock
from urllib.parse import quote

from agentgateway._core import SigV4Signer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

MODEL_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:/~%+@ é☃"
REGIONS = ["us-east-1", "eu-west-3", "ap-southeast-2", "us-gov-west-1"]
HOSTS = ["bedrock-runtime.us-east-1.amazonaws.com", "127.0.0.1:8080", "vpce-0123.bedrock-runtime.example.com"]


def botocore_authorization(
    host: str, path: str, body: bytes, region: str, key: tuple[str, str, str | None], when: datetime.datetime
) -> tuple[str, str]:
    request = AWSRequest(
        method="POST", url=f"https://{host}{path}", data=body, headers={"Content-Type": "application/json"}
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(Credentials(*key), "bedrock", region).add_auth(request)
    return request.headers["Authorization"], request.headers["X-Amz-Date"]


def parse_lines(lines: bytes) -> dict[str, str]:
    assert lines.endswith(b"\r\n")
    return dict(line.split(": ", 1) for line in lines.decode().split("\r\n") if line)


def test_authorization_is_byte_identical_to_botocore() -> None:
    rng = random.Random(20251125)
    signers: dict[tuple[str, str], SigV4Signer] = {}
    for case in range(600):
        model_id = "".join(rng.choice(MODEL_ID_CHARS) for _ in range(rng.randint(1, 40)))
        if model_id in (".", ".."):
            continue
        path = f"/model/{quote(model_id, safe='')}/{rng.choice(['converse', 'converse-stream'])}"
        body = rng.randbytes(rng.randint(0, 3000))
        region = rng.choice(REGIONS)
        host = rng.choice(HOSTS)
        # A few keys, so the signing-key cache is both reused and replaced.
        key = rng.choice(
            [
                ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None),
                ("ASIAEXAMPLE2", "secret/two+==", "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ=="),
                ("ASIAEXAMPLE3", "s3", "token-three"),
            ]
        )
        when = datetime.datetime(2025, 11, 24, 23, 59, 58) + datetime.timedelta(seconds=rng.randint(0, 5))
        expected, amz_date = botocore_authorization(host, path, body, region, key, when)
        signer = signers.setdefault((region, host), SigV4Signer(region, "bedrock", host, "application/json"))
        headers = parse_lines(signer.headers(path, body, key[0], key[1], key[2], amz_date))
        assert headers["Authorization"] == expected, (case, model_id, key[0])
        assert headers["X-Amz-Date"] == amz_date
        assert headers.get("X-Amz-Security-Token") == key[2]


def test_default_date_is_now() -> None:
    signer = SigV4Signer("us-east-1", "bedrock", HOSTS[0], "application/json")
    headers = parse_lines(signer.headers("/model/m/converse", b"{}", "AKID", "secret", None))
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    signed = datetime.datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    assert abs((now - signed).total_seconds()) < 5
    assert "X-Amz-Security-Token" not in headers
    expected, _ = botocore_authorization(
        HOSTS[0], "/model/m/converse", b"{}", "us-east-1", ("AKID", "secret", None), signed
    )
    assert headers["Authorization"] == expected
