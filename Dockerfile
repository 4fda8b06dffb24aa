# The warmer's image: `warmer up` by default; docker-compose.yml runs webhook, worker, beat and
# flower from it. Dependencies are pinned by constraints.txt (make constraints).
#
# BASE is any Debian-like image whose `python` (first on PATH) is Python 3.11 or newer, with
# venv: python:3.11-slim by default; `make image-test` builds on a bookworm base of its own
# (tests/image/run: mmdebstrap, a venv first on PATH), without Docker Hub.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
WORKDIR /src
# The warmer in a virtual environment of its own, which the image copies whole. The pinned
# dependencies first: a change of the code alone installs none of them again.
COPY constraints.txt ./
RUN python -m venv /opt/warmer \
    && /opt/warmer/bin/pip install --no-cache-dir -r constraints.txt
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY tasks ./tasks
# pip check: a dependency that constraints.txt does not pin fails the build here.
RUN /opt/warmer/bin/pip install --no-cache-dir --no-deps -c constraints.txt . \
    && /opt/warmer/bin/pip check

FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/warmer/bin:$PATH
RUN useradd --system --uid 10001 --create-home --home-dir /home/warmer warmer
COPY --from=build /opt/warmer /opt/warmer
USER warmer
WORKDIR /home/warmer
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --retries=6 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
ENTRYPOINT ["warmer"]
CMD ["up", "--host", "0.0.0.0"]
