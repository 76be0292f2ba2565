# syntax=docker/dockerfile:1
# One image for both entry points (SCIM server now, the operator later), so "bundled" means
# "the same version". Build stage: install into a virtual environment from wheels. Final stage:
# slim Python, that environment, a non-root user, nothing else.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/joyn-scim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scim_server ./scim_server
COPY operator ./operator
RUN /opt/joyn-scim/bin/pip install --no-compile . \
    && /opt/joyn-scim/bin/python -m compileall -q /opt/joyn-scim/lib

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 joyn \
    && useradd --system --uid 10001 --gid joyn --no-create-home --shell /usr/sbin/nologin joyn \
    && mkdir /data && chown joyn:joyn /data
COPY --from=build /opt/joyn-scim /opt/joyn-scim
ENV PATH=/opt/joyn-scim/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    JOYN_SCIM_HOST=0.0.0.0 \
    JOYN_SCIM_PORT=8080 \
    JOYN_SCIM_DATA_DIR=/data
WORKDIR /data
VOLUME /data
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["joyn-scim"]
CMD ["serve"]
