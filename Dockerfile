# syntax=docker/dockerfile:1
# One image for every process of credit-transport: docker-compose.yml chooses the subcommand
# (`credit-transport worker`, `api`, ...). Health checks are defined per service in the compose
# file, because each process answers on its own port.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a virtual environment with the package and its runtime dependencies -------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY . .
# `pip install .` without the dev extras: no pytest, ruff or mypy in the image. On x86_64 every
# dependency ships a manylinux wheel for CPython 3.11, so the slim image needs no compiler. The
# cache mount only speeds up rebuilds; it is not part of the image.
RUN --mount=type=cache,target=/root/.cache/pip pip install .

# The Avro codecs read the checked-in schemas from `<parent of the streams package>/schemas/avro`,
# which the wheel does not contain (schemas/ is data, not a package). Put them where the installed
# package looks, and fail the build if it still cannot find them. (`python -P`: import the
# installed package, not the source tree in the working directory.)
RUN site_packages="$(python -P -c 'import pathlib, streams; print(pathlib.Path(streams.__file__).resolve().parent.parent)')" \
    && cp -r schemas "$site_packages/schemas" \
    && python -P -c "from streams.codecs import DEFAULT_SCHEMA_DIR as d; assert sorted(d.glob('*.avsc')), d"

# ---- runtime: the virtual environment, the policy, and a non-root user ----------------------
FROM ${PYTHON_IMAGE}

# A fixed uid, so that mounted secrets and volumes can be made readable to it on the host.
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" credit \
    && useradd --system --uid "${APP_UID}" --gid credit --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin credit \
    && mkdir -p /var/lib/credit-transport/worker /var/lib/credit-transport/website \
    && chown -R credit:credit /var/lib/credit-transport

COPY --from=build /opt/venv /opt/venv
COPY config /app/config

# Paths that the settings would otherwise resolve next to the installed package. The state
# folders exist in the image, owned by the app user, so that fresh volumes mounted on them
# start with that owner.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CREDIT_BIND_HOST=0.0.0.0 \
    CREDIT_POLICY_FILE=/app/config/policy.yaml \
    CREDIT_CALENDAR_DIR=/app/config/calendar \
    CREDIT_DATA_DIR=/var/lib/credit-transport/worker \
    CREDIT_WEBSITE_DB=/var/lib/credit-transport/website/website.sqlite3

WORKDIR /app
USER credit

# Fail the build, not the first start, when the console script or the policy file is missing.
RUN credit-transport --help > /dev/null \
    && python -P -c "from streams.settings import Settings; s = Settings(); assert s.policy_file.is_file(), s.policy_file"

# worker web/metrics, serving-store metrics, publisher metrics, website, query API
EXPOSE 6066 9101 9102 8000 8080

CMD ["credit-transport", "--help"]
