# syntax=docker/dockerfile:1
#
# The storeplane binary with the dashboard inside, on a distroless base, as uid 65532.
#   docker build -t ghcr.io/storeplane/storeplane:<tag> .
# Three stages: the dashboard (Vite → dashboard/dist), the binary (which embeds
# dashboard/dist, the blueprints in templates/ and deploy/ at compile time), and a final
# image holding nothing but the binary. See docs/deploy.md.

# --- 1. The dashboard -------------------------------------------------------------
FROM node:20-bookworm-slim AS dashboard
WORKDIR /src/dashboard
# Dependencies first, so that they are cached until the lock file changes.
COPY dashboard/package.json dashboard/package-lock.json ./
# The image's npm is 10; Vite 8 installs with npm 11 (scripts/dashboard needs it too).
RUN npm install --global npm@11.19.1 && npm ci
COPY dashboard/ ./
# The TypeScript client is generated from the committed spec in openapi/.
COPY openapi/ /src/openapi/
RUN npm run build

# --- 2. The binary ----------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
COPY --from=dashboard /src/dashboard/dist dashboard/dist
# The registry and target directory are cache mounts (kept between builds, not in the
# image), so the binary is copied out of target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin storeplane \
    && cp target/release/storeplane /storeplane

# --- 3. The image -----------------------------------------------------------------
# glibc and libgcc, CA certificates, no shell, user `nonroot` (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /storeplane /storeplane
USER 65532:65532
# 8080: API and dashboard (`serve`); 9090: health and metrics (`orchestrate`).
EXPOSE 8080 9090
ENTRYPOINT ["/storeplane"]
