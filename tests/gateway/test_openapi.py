"""The OpenAPI document the gateway serves at /docs describes every route a client uses."""

from gateway.main import create_app
from gateway.settings import GatewaySettings


def test_every_route_is_in_the_openapi_document() -> None:
    paths = create_app(GatewaySettings(auth="dev", env="development")).openapi()["paths"]
    expected = {
        "/v1/models": {"get"},
        "/v1/sessions": {"get", "post"},
        "/v1/sessions/{session_id}": {"get", "patch", "delete"},
        "/v1/sessions/{session_id}/members": {"post"},
        "/v1/sessions/{session_id}/members/{user_id}": {"delete"},
        "/v1/sessions/{session_id}/messages": {"get"},
        "/v1/sessions/{session_id}/messages/{message_id}/regenerate": {"post"},
        "/v1/sessions/{session_id}/export": {"get"},
        "/v1/sessions/{session_id}/presence": {"get"},
        "/v1/usage": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    change = paths["/v1/sessions/{session_id}"]["patch"]["requestBody"]["content"]
    schema = change["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    fields = create_app(GatewaySettings(auth="dev", env="development")).openapi()["components"][
        "schemas"
    ][schema]["properties"]
    assert {"title", "policy", "system_prompt", "model", "temperature", "max_tokens"} <= set(fields)
