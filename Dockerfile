# The live bot: collectors + analyze/detect/alert cycle, on PostgreSQL or the embedded SQLite store.
#   docker build -t incident-monitor .
#   docker run -e DATABASE_URL=postgresql://monitor@db/monitor -e X_BEARER_TOKEN=... \
#              -e SLACK_WEBHOOK_URL=... -v monitor-data:/data incident-monitor
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # the embedded SQLite store and any exports live on the volume
    XDG_DATA_HOME=/data \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

RUN groupadd --system --gid 10001 monitor \
 && useradd --system --uid 10001 --gid monitor --home-dir /home/monitor --create-home monitor \
 && mkdir -p /data && chown monitor:monitor /data

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY monitor ./monitor
COPY nlp ./nlp
COPY storage ./storage

# The default install runs the classifier on ONNX Runtime: no torch, no CUDA. The Sudachi dictionary
# (sudachidict_core) and the bundled model are part of the install; loading them once here proves it.
# constraints.txt pins every runtime dependency to the versions the tests passed with (make constraints).
RUN pip install -c constraints.txt . \
 && python -c "from nlp import Analyzer; a = Analyzer.load(); print(a.analyze('楽天証券で勝手に株を売られた').label)"

USER monitor
VOLUME ["/data"]
WORKDIR /home/monitor

# Healthy while the store answers and the scheduler has written its heartbeat recently. `status --check`
# only reads: it never creates the store or runs migrations (`run` and `db upgrade` do that).
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
  CMD ["incident-monitor", "status", "--check"]

CMD ["incident-monitor", "run"]
