"""The ceiling of the stack benchmark: a bare FastAPI endpoint, nothing of Studybase's.

Served by gunicorn with the committed `gunicorn.conf.py` (only the app differs) behind the same
nginx configuration, so the gap between it and a real route is what the route itself costs.
"""

from fastapi import FastAPI

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/api/v1/hello")
async def hello() -> dict[str, str]:
    return {"status": "ok"}
