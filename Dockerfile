# The billing CLI against a real MongoDB (see docker-compose.yml); no embedded extra here.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY billing ./billing
RUN pip install -c constraints.txt . && useradd --create-home billing
USER billing
# Installs or updates the schema (idempotent); every other command needs it done first.
CMD ["billing", "setup"]
