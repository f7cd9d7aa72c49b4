# Production image of the Python services: FastAGI server, relatives' API, history copier, push bridge, guard, set-up.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends espeak-ng sox nftables \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ivr ivr
COPY agi agi
COPY api api
COPY ami ami
COPY pushbridge pushbridge
COPY store store
COPY guard guard
COPY reconciler reconciler
COPY history history
COPY metrics metrics
COPY tools tools
COPY prompts prompts
COPY config config
RUN pip install --no-cache-dir .
CMD ["python", "-m", "agi.main"]
