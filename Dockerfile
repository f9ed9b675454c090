# syntax=docker/dockerfile:1
# Studybase API image: gunicorn with uvicorn workers serving src/app.py.
# Build stage installs the pinned requirements into a virtualenv; the final stage copies only
# that virtualenv and the code, and runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# Every dependency ships a binary wheel (psycopg[binary], argon2-cffi), so no compiler is needed.
RUN /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: -r /tmp/requirements.txt

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    UPLOAD_DIR=/app/data/uploads \
    GUNICORN_BIND=0.0.0.0:8000
RUN groupadd --system --gid 10001 studybase \
    && useradd --system --uid 10001 --gid studybase --home-dir /app --no-create-home --shell /usr/sbin/nologin studybase
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY main.py alembic.ini gunicorn.conf.py ./
COPY src ./src
# The dashboard page: nginx serves it in compose; the app serves the same files at / (src/page.py).
COPY nginx/html ./nginx/html
RUN mkdir -p /app/data/uploads && chown -R studybase:studybase /app/data
USER 10001:10001
EXPOSE 8000
# slim images have no curl: ask the liveness route with Python itself.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4).status == 200 else 1)"]
CMD ["gunicorn", "--config", "gunicorn.conf.py"]
