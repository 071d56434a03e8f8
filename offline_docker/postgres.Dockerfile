# PostgreSQL with the contract of the official `postgres` image, from Debian's postgresql-15: the superuser
# POSTGRES_USER with the password from POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE and the database POSTGRES_DB,
# created in /var/lib/postgresql/data on the first start (postgres_entrypoint.py); runs as uid 999 (`postgres`,
# as in the official image); `pg_isready` on the PATH.
#
# The build context holds the Debian packages PostgreSQL needs beyond the base image (downloaded on the host with
# its apt by offline_docker/images.py) and the entrypoint, so nothing is downloaded during the build.
ARG PYTHON_BASE_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_BASE_IMAGE}
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash postgres \
    && mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
COPY debs/ /tmp/debs/
# policy-rc.d 101: the packages' scripts must not start the service inside the build.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
    && dpkg -i /tmp/debs/*.deb \
    && rm -rf /tmp/debs /usr/sbin/policy-rc.d \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
    && chmod 700 /var/lib/postgresql/data
COPY postgres_entrypoint.py /usr/local/bin/docker-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint"]
CMD ["postgres"]
