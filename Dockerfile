# The hogx server image: the exchange, its journal and (with --database-url) the SQL ledger.
# A build stage with a C compiler makes the wheel, so the image runs the compiled order book
# (matching_engine/compiled_book.pyx), journal codec (exchange/compiled_journal.pyx, which
# links OpenSSL's libcrypto and zlib, both in the slim image), custody and risk
# (clearing/compiled_clearing.pyx) and trading path (exchange/compiled_core.pyx) without carrying
# the compiler.
FROM python:3.12-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY matching_engine ./matching_engine
COPY clearing ./clearing
COPY exchange ./exchange
COPY api ./api
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY --from=build /wheels /wheels
# The image must run the compiled twins: fail the build if the wheel came without them.
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && python -c "import matching_engine as m; assert m.BOOK_IMPLEMENTATION == 'compiled'" \
    && python -c "import exchange.journal as j; assert j.CODEC_IMPLEMENTATION == 'compiled'" \
    && python -c "import clearing.implementation as c; assert c.CLEARING_IMPLEMENTATION == 'compiled'" \
    && python -c "import exchange.core as c; assert c.CORE_IMPLEMENTATION == 'compiled'" \
    && useradd --system --home /var/lib/hogx hogx \
    && mkdir -p /var/lib/hogx && chown hogx /var/lib/hogx

USER hogx
VOLUME ["/var/lib/hogx"]
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=5 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
# exec form: SIGTERM reaches hogx directly, which finishes the batch, snapshots and exits.
ENTRYPOINT ["hogx"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/var/lib/hogx"]
