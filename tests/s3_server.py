"""A real S3 HTTP API for the tests: moto's server mode in a thread of its own, on a free loopback
port. The app talks to it over HTTP with its own client, exactly as to AWS, MinIO or Ceph; the tests
look into its buckets with a client of their own."""

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from src.third_party.object_store import S3Credentials

# moto takes any credentials; real ones are never needed (nor read from the environment).
S3_CREDENTIALS = S3Credentials(
    access_key_id="studybase-test", secret_access_key="not-a-secret", region="us-east-1"
)


@dataclass
class S3TestServer:
    endpoint_url: str
    client: Any

    def new_bucket(self) -> str:
        """An empty bucket of its own for one test."""
        name = f"studybase-{uuid.uuid4().hex[:16]}"
        self.client.create_bucket(Bucket=name)
        return name

    def object_names(self, bucket: str) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=bucket)
        return sorted(entry["Key"] for entry in listed.get("Contents", ()))

    def object_bytes(self, bucket: str, name: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=name)["Body"].read()


@contextlib.contextmanager
def running_s3_server() -> Iterator[S3TestServer]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint_url = f"http://{host}:{port}"
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=S3_CREDENTIALS.access_key_id,
            aws_secret_access_key=S3_CREDENTIALS.secret_access_key,
            region_name=S3_CREDENTIALS.region,
        )
        yield S3TestServer(endpoint_url=endpoint_url, client=client)
    finally:
        server.stop()
