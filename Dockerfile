# One image for every role: the command decides whether it serves the API, relays or delivers.
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock

COPY handoff ./handoff
COPY outbox ./outbox
COPY worker ./worker
COPY api ./api
COPY schema ./schema
RUN pip install --no-cache-dir --no-deps .

# Never run the service as root.
RUN useradd --system --uid 10001 handoff
USER handoff

EXPOSE 8000
CMD ["handoff", "api", "--host", "0.0.0.0", "--port", "8000"]
