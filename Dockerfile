# The warmer's image: `warmer up` by default; docker-compose.yml runs webhook, worker, beat and
# flower from it. Dependencies are pinned by constraints.txt (make constraints).
#
# BASE is any Debian-like image whose `python` and `pip` (first on PATH) are Python 3.11 or
# newer: python:3.11-slim by default; `make image-test` builds on a bookworm base of its own
# (tests/image/run: mmdebstrap, a venv first on PATH), without Docker Hub.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
WORKDIR /src
# The pinned dependencies first: a change of the code alone builds none of them again.
COPY constraints.txt ./
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r constraints.txt
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY tasks ./tasks
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels -c constraints.txt .

FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --create-home --home-dir /home/warmer warmer
# The wheels are mounted from the build stage, not copied: no layer of the image holds them.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index /wheels/*.whl
USER warmer
WORKDIR /home/warmer
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --retries=6 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
ENTRYPOINT ["warmer"]
CMD ["up", "--host", "0.0.0.0"]
