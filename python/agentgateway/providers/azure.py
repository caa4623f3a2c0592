"""Azure OpenAI and Azure AI Foundry (``provider: azure``): OpenAI's wire format at Azure's URLs.

Endpoint, as agentgateway builds it (``crates/agentgateway/src/llm/azure.rs``):

* host ``{azureResourceName}.openai.azure.com`` (``azureResourceType: openAI``) or
  ``{azureResourceName}.services.ai.azure.com`` (``foundry``, also spelled ``aiServices``);
  ``params.baseUrl`` replaces scheme, host and port, the path below is kept;
* ``openAI`` with ``azureApiVersion`` ``v1`` (the default): ``/openai/v1/chat/completions`` (the v1 API: the
  deployment is the body's ``model``); ``preview``: the same with ``?api-version=preview``; a dated version
  (``2024-10-21``): ``/openai/deployments/{model}/chat/completions?api-version={version}`` (the deployment is
  the upstream model: ``params.model`` or the client's);
* ``foundry``: ``/api/projects/{azureProjectName or azureResourceName}/openai/v1/chat/completions``.

Auth: ``params.apiKey`` is sent as ``api-key``; without one, Microsoft Entra ID tokens for
``https://cognitiveservices.azure.com/.default`` from azure-identity's ``DefaultAzureCredential`` (environment
service principal, workload identity, managed identity, Azure CLI, ...), as ``Authorization: Bearer``. Tokens
live in the gateway's one refresh-ahead cache (google_auth.GoogleCredentials): fetched in a thread, one fetch at a
time, renewed in the background before they expire; a 401 drops the token and the request is sent once more.
The request and the answers are OpenAI's, so the ``openai`` core translator reads them.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from ..config import ModelEntry
from ..errors import ConfigError, GatewayError
from ..google_auth import GoogleCredentials
from ..upstream import Endpoint, UpstreamRequest, encode_headers, header_line
from .base import ChatRequest
from .openai import OpenAIProvider

__all__ = ["AZURE_SCOPE", "AzureProvider", "EntraCredentials"]

AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"


class EntraCredentials(GoogleCredentials):
    """Entra ID access tokens through azure-identity, in the refresh-ahead cache the other clouds use."""

    source = "Microsoft Entra ID credentials for Azure OpenAI"

    def __init__(self, scope: str = AZURE_SCOPE) -> None:
        super().__init__((scope,))

    def _refresh(self) -> tuple[str, float]:
        from azure.identity import DefaultAzureCredential

        if self._credentials is None:
            # The Azure CLI and PowerShell probes start processes; they stay in the chain (a developer's machine
            # uses them), and run here, in the refresh thread, never on the event loop.
            self._credentials = DefaultAzureCredential()
        token: Any = self._credentials.get_token(*self.scopes)
        if not isinstance(token.token, str) or not token.token:
            raise GatewayError(
                "Microsoft Entra ID returned no access token.", status=502, code="upstream_credentials_unavailable"
            )
        return token.token, float(token.expires_on) - time.time()


_ENTRA: list[EntraCredentials] = []


def _shared_entra() -> EntraCredentials:
    """One Entra token cache per worker for every Azure entry without a key: DefaultAzureCredential finds the same
    identity for all of them, so one token (and one refresh) serves them all."""
    if not _ENTRA:
        _ENTRA.append(EntraCredentials())
    return _ENTRA[0]


class AzureProvider(OpenAIProvider):
    translator = "openai"

    def __init__(self, entry: ModelEntry) -> None:
        super().__init__(entry)
        params = entry.params
        resource = params.azure_resource_name
        kind = params.azure_resource_type
        if resource is None or kind is None:  # config.py requires both; kept for configs built in code
            raise ConfigError("params.azureResourceName and params.azureResourceType are required for azure")
        foundry = kind in ("foundry", "aiServices")
        host = f"{resource}.services.ai.azure.com" if foundry else f"{resource}.openai.azure.com"
        root = params.base_url or f"https://{host}"
        version = params.azure_api_version or "v1"
        #: a dated API version addresses the deployment in the path, per request's model; the others do not
        self._deployment_path: tuple[str, str] | None = None
        if foundry:
            path = f"/api/projects/{quote(params.azure_project_name or resource, safe='')}/openai/v1/chat/completions"
        elif version == "v1":
            path = "/openai/v1/chat/completions"
        elif version == "preview":
            path = "/openai/v1/chat/completions?api-version=preview"
        else:
            path = ""
            self._deployment_path = (root + "/openai/deployments/", f"/chat/completions?api-version={quote(version)}")
        self.endpoint = Endpoint.parse(root + path) if path else Endpoint.parse(root + "/")
        self._endpoints: dict[str, Endpoint] = {}
        api_key = params.api_key
        base = {"Content-Type": "application/json"}
        if api_key is not None:
            base["api-key"] = api_key.get_secret_value()
        self.headers = encode_headers(base)
        self.forward_client_auth = False
        self.entra = _shared_entra() if api_key is None else None
        self._token = ""

    def _endpoint_for(self, model: str) -> Endpoint:
        if self._deployment_path is None:
            return self.endpoint
        endpoint = self._endpoints.get(model)
        if endpoint is None:
            head, tail = self._deployment_path
            endpoint = Endpoint.parse(head + quote(model, safe="") + tail)
            if len(self._endpoints) < 1024:  # clients send few model names; the cap bounds a flood of random ones
                self._endpoints[model] = endpoint
        return endpoint

    async def prepare(self, request: ChatRequest) -> UpstreamRequest:
        upstream = await super().prepare(request)  # the model put in, stream_options asked for
        endpoint = self._endpoint_for(self.upstream_model or request.model)
        headers = upstream.headers
        if self.entra is not None:
            token = await self.entra.token()
            headers += header_line(b"Authorization", b"Bearer " + token.encode())
            if token != self._token:  # an upstream error quoting the token is redacted (the current one)
                if self._token in self.secrets:
                    self.secrets.remove(self._token)
                self.secrets.append(token)
                self._token = token
        return UpstreamRequest(endpoint, headers, upstream.body)

    async def credentials_rejected(self) -> bool:
        if self.entra is None:
            return False
        self.entra.invalidate()
        return True
