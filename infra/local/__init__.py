"""The local stack: jobq on 127.0.0.1 with moto, provisioned from template.yaml.

    python -m infra.local [--port 8000]          # run it (see --help)
    python -m infra.local.token --user alice     # a token it accepts (--admin for an admin)

Programmatic use (tests)::

    from infra.local import LocalStack
    with LocalStack(api_port=0, state_dir=tmp_path) as stack:
        stack.api_url, stack.aws_endpoint, stack.queues["email-sending"].url
        stack.mappings["email-sending"].enabled = False   # pause a consumer
        stack.mint_token("alice"), stack.mint_token("root", admin=True)

Modules: ``cfn`` (template evaluation), ``provision`` (resources in moto), ``esm`` (SQS
event source mapping), ``auth`` (API Gateway routes + JWT authorizer), ``issuer`` /
``token`` (the local token issuer), ``runtime`` (Lambda context, handler import),
``stack`` (the whole), ``__main__`` (the CLI).

Names are resolved lazily so ``python -m infra.local.token`` does not import boto3,
moto or uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.local.stack import LocalStack, QueueInfo
    from infra.local.token import mint_token

__all__ = ["LocalStack", "QueueInfo", "mint_token"]


def __getattr__(name: str) -> Any:
    if name in ("LocalStack", "QueueInfo"):
        from infra.local import stack

        return getattr(stack, name)
    if name == "mint_token":
        from infra.local.token import mint_token

        return mint_token
    raise AttributeError(name)
