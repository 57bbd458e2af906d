# syntax=docker/dockerfile:1.7
# One image for every feature service; the command picks the service:
#   docker run IMAGE                      -> enterprisehub serve realtime
#   docker run IMAGE serve ml --port 8002
#   docker run IMAGE migrate              (the migration Job)
#   docker run IMAGE model publish --from /app/models/lead-scoring/model.joblib \
#       --to s3://BUCKET/lead-scoring/    (the model-publish Job)
#   docker run IMAGE model publish --from /app/models/churn-risk/model.joblib \
#       --to s3://BUCKET/churn-risk/      (the churn-model-publish Job)
#
# The image carries the models it was built with, trained in the build stage
# from their generators and fixed seeds: the lead-scoring model
# (docs/lead-scoring-model.md, "Shipping the model") and the churn-risk model
# (docs/churn-model.md). ML_MODEL_URI and CHURN_MODEL_URI default to those
# files, so the image serves on its own; the stacks instead publish them to the
# models bucket and point both settings at their bucket prefixes.
#
# Base image: pinned to a patch tag (CPython 3.11.14 on Debian 12 "bookworm",
# the Python the lock file was resolved for) instead of a floating
# "3.11-slim", so a rebuild gets the same interpreter and OS release. A tag
# can still be re-pushed with OS security fixes; for byte-identical rebuilds
# append the digest (python:3.11.14-slim-bookworm@sha256:...). It is not
# written here because this file was produced without registry access;
# Renovate/Dependabot should add it and keep both current.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
# uv matches the version in uv.lock's dev group.
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9
# The training seeds of the built-in models. Training is a pure function of the
# code, the locked libraries and the seed, so rebuilding the same commit gives
# the same model sha256 and version, and publishing it again uploads nothing.
ARG MODEL_SEED=20260101
# services/churn/training.py's default seed (the model docs/churn-model.md reports).
ARG CHURN_MODEL_SEED=20261203

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
# The Pulumi SDKs are dependencies of the infra program, never imported by a
# service; leaving them out keeps several hundred MB out of the image.
ARG SKIP_PACKAGES="--no-install-package pulumi --no-install-package pulumi-aws \
 --no-install-package pulumi-kubernetes --no-install-package pulumi-random"
WORKDIR /src
# Dependencies first: this layer is reused until pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project ${SKIP_PACKAGES}
# The image carries what the services run, nothing else: the wheel holds only
# `services` (pyproject: packages = ["services"]). The Pulumi program, its
# synthesis tooling and `make run` (infra/, localrun/) stay out of the context.
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable ${SKIP_PACKAGES}
# Train with the interpreter and libraries the runtime stage will load it with
# (scikit-learn pickles are only reliable within one major.minor release, and
# the loader checks it). Files 0444, directory 0555: the service user (uid
# 10001) can read the model but neither replace nor add files; only a rebuilt
# image changes it.
ARG MODEL_SEED
RUN /opt/venv/bin/enterprisehub model train \
      --out /opt/models/lead-scoring/model.joblib --seed "${MODEL_SEED}" \
 && chmod 0444 /opt/models/lead-scoring/* \
 && chmod 0555 /opt/models/lead-scoring
ARG CHURN_MODEL_SEED
RUN /opt/venv/bin/enterprisehub churn train \
      --out /opt/models/churn-risk/model.joblib --seed "${CHURN_MODEL_SEED}" \
 && chmod 0444 /opt/models/churn-risk/* \
 && chmod 0555 /opt/models/churn-risk

# The RDS CA bundle: the stacks' DSNs say sslmode=verify-full with this file
# (infra/components/database.py RDS_CA_BUNDLE), so a service only talks to a
# server whose certificate chains to Amazon RDS's CAs and names the endpoint.
FROM ${PYTHON_IMAGE} AS certs
ADD https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /certs/rds-global-bundle.pem
RUN chmod 0444 /certs/rds-global-bundle.pem \
 && grep -q "BEGIN CERTIFICATE" /certs/rds-global-bundle.pem

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="enterprisehub-phase3" \
      org.opencontainers.image.description="EnterpriseHub Phase 3 feature services" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app
# Owned by root and read-only for the service user; bytecode is compiled at
# build time, so nothing is written at run time except under /tmp.
COPY --from=build /opt/venv /opt/venv
# The models and their .json metadata: COPY from a stage creates them owned by
# root (uid/gid 0) and keeps the 0444/0555 modes set above.
COPY --from=build /opt/models/lead-scoring /app/models/lead-scoring
COPY --from=build /opt/models/churn-risk /app/models/churn-risk
COPY --from=certs /certs/rds-global-bundle.pem /app/certs/rds-global-bundle.pem
ENV PATH=/opt/venv/bin:${PATH} \
    ML_MODEL_URI=/app/models/lead-scoring/model.joblib \
    CHURN_MODEL_URI=/app/models/churn-risk/model.joblib \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
WORKDIR /tmp
USER 10001:10001
EXPOSE 8001 8002 8003 8004 8005 8501
# No HEALTHCHECK: Kubernetes probes /health and the service's health path.
ENTRYPOINT ["enterprisehub"]
CMD ["serve", "realtime"]
