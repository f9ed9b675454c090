"""The OpenAPI document: every route described, every error documented as problem+json."""

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
