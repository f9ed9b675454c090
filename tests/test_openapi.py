"""The OpenAPI document: every route described, every error documented as problem+json."""

import json

from src.app import create_app
from src.schemas import Problem


async def test_every_route_has_a_summary_and_documents_its_errors_as_problems(client):
    spec = (await client.get("/openapi.json")).json()

    operations = [op for path in spec["paths"].values() for op in path.values()]
    assert len(operations) >= 15
    for operation in operations:
        assert operation.get("summary"), operation["operationId"]
        assert operation.get("description"), operation["operationId"]
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], operation["operationId"]
                examples = response["content"]["application/problem+json"].get("examples", {})
                assert examples, (operation["operationId"], status)
                for code, example in examples.items():
                    assert example["value"]["code"] == code
                    assert example["value"]["status"] == int(status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert set(spec["components"]["schemas"]["Problem"]["required"]) >= set(Problem.model_fields) - {
        "errors",
        "errors_total",
        "errors_truncated",
    }


async def test_token_route_is_an_oauth2_password_flow_for_swagger(client):
    spec = (await client.get("/openapi.json")).json()

    schemes = spec["components"]["securitySchemes"]
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"
    token_body = spec["paths"]["/api/v1/auth/token"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in token_body


async def test_docs_pages_are_served(client):
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]


# Issue 17: shapes that client generators read (openapi-python-client, openapi-typescript).


def test_operation_ids_are_the_route_names_a_generated_client_calls():
    spec = create_app().openapi()

    operation_ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(set(operation_ids)) == len(operation_ids)
    assert [name for name in operation_ids if not name.isidentifier() or "api_v1" in name] == []
    assert spec["paths"]["/api/v1/studies"]["post"]["operationId"] == "create_study"
    upload = spec["paths"]["/api/v1/studies/{study_id}/sample-files"]["post"]
    assert upload["operationId"] == "upload_sample_file"


def test_no_parameter_is_documented_with_a_null_branch():
    """A header or a query parameter is left out, never null: its schema is its type alone."""
    spec = create_app().openapi()

    parameters = [
        parameter
        for path in spec["paths"].values()
        for operation in path.values()
        for parameter in operation.get("parameters", [])
    ]
    assert [parameter["name"] for parameter in parameters if "anyOf" in parameter["schema"]] == []
    documented = {(parameter["name"], json.dumps(parameter["schema"])) for parameter in parameters}
    assert ("is_active", json.dumps({"title": "Is Active", "type": "boolean"})) in documented
    assert any(name == "if-match" and '"pattern"' in schema for name, schema in documented)
