"""Polygon flat files from their S3 endpoint (`https://files.polygon.io`, bucket `flatfiles`).

Polygon issues an S3 access key id and secret (SigV4) for the flat files. They come from the
environment only (never config files, ~/.aws or instance metadata): a key in the repo or a
resource config would end up in Dagster's run records. boto3 is imported lazily, so loading the
pipeline's definitions does not pay for it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

KEY_VARS = (("TRADING_POLYGON_S3_ACCESS_KEY_ID", "TRADING_POLYGON_S3_SECRET_ACCESS_KEY"),
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


def credentials(env: Mapping[str, str] | None = None) -> tuple[str, str, str | None]:
    """(access key id, secret, session token): the first complete pair of KEY_VARS."""
    env = os.environ if env is None else env
    for key_var, secret_var in KEY_VARS:
        if env.get(key_var) and env.get(secret_var):
            token = env.get("AWS_SESSION_TOKEN") if key_var.startswith("AWS_") else None
            return env[key_var], env[secret_var], token or None
    names = " / ".join(f"{k} and {s}" for k, s in KEY_VARS)
    raise ValueError(f"history source polygon_flat (s3://) needs S3 credentials in the environment: {names}")


def client(endpoint_url: str, env: Mapping[str, str] | None = None) -> Any:
    """An S3 client for `endpoint_url` signing with SigV4 and the environment's keys only."""
    import boto3
    from botocore.config import Config

    key_id, secret, token = credentials(env)
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name="us-east-1",
        aws_access_key_id=key_id, aws_secret_access_key=secret, aws_session_token=token,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      connect_timeout=30, read_timeout=120, retries={"max_attempts": 5, "mode": "standard"}))


def download(bucket: str, key: str, local: Path, *, endpoint_url: str, what: str,
             s3: Any = None) -> Path | None:
    """`key` of `bucket` into `local` in one GET (atomically: a crash leaves no half file).
    None when the key does not exist (no data that day); any other failure raises, naming `what`."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = s3 if s3 is not None else client(endpoint_url)
    where = f"s3://{bucket}/{key} at {endpoint_url}"
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        with tempfile.NamedTemporaryFile(dir=local.parent, suffix=".part", delete=False) as fh:
            tmp = Path(fh.name)
            try:
                shutil.copyfileobj(body, fh, 1 << 20)
            except BaseException:
                fh.close()
                tmp.unlink(missing_ok=True)
                raise
        os.replace(tmp, local)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if err.get("Code") in MISSING_CODES or (status == 404 and not err.get("Code")):
            return None  # (a wrong bucket, NoSuchBucket, is a 404 too, but it is not "no data")
        raise RuntimeError(f"{what}: downloading {where} failed: {err.get('Code', status)} "
                           f"{err.get('Message', '')}".rstrip()) from exc
    except BotoCoreError as exc:
        raise RuntimeError(f"{what}: downloading {where} failed: {exc}") from exc
    return local
