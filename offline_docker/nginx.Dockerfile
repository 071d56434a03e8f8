# nginx with the contract of the official `nginx` image, from Debian's package: `nginx -g 'daemon off;'` in the
# foreground as the command, extra configuration read from /etc/nginx/conf.d/*.conf (where compose puts the front
# door's), logs on stdout and stderr; `healthcheck URL` stands in for the official Alpine image's `wget` in
# compose's healthcheck.
#
# The build context holds the Debian packages nginx needs beyond the base image (downloaded on the host with its
# apt by offline_docker/images.py) and the healthcheck script, so nothing is downloaded during the build.
ARG PYTHON_BASE_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_BASE_IMAGE}
COPY debs/ /tmp/debs/
# policy-rc.d 101: the packages' scripts must not start the service inside the build.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
    && dpkg -i /tmp/debs/*.deb \
    && rm -rf /tmp/debs /usr/sbin/policy-rc.d /etc/nginx/sites-enabled/default \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
COPY healthcheck.py /usr/local/bin/healthcheck
STOPSIGNAL SIGQUIT
EXPOSE 80
CMD ["nginx", "-g", "daemon off;"]
