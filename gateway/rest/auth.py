"""The REST face's consumer authentication: the same ``Authenticator`` as the gRPC face.

``Authorization: Bearer <gateway key>`` is checked before any other work, with the scope the
route's RPC needs, and the principal is written into the call record (consumer, key id, tenant).
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.call import Call
from gateway.credentials.authenticator import Authenticator
from gateway.rest.calls import Authenticator as RestAuthenticator
from gateway.rpc.auth import scope_for


def rest_authenticator(authenticator: Authenticator) -> RestAuthenticator:
    async def authenticate(headers: Mapping[str, str], call: Call) -> None:
        principal = await authenticator.authenticate(
            headers.get("authorization"), call.peer, scope_for(call.method)
        )
        call.consumer = principal.consumer
        call.key_id = principal.key_id
        call.tenant = principal.profile

    return authenticate
