# syntax=docker/dockerfile:1
# One image for every service; SERVICES picks which ones a container runs (docker-compose.yml, k8s/).
# Build: docker build -t moleculer-microservices:local .   No secret is baked in: everything comes
# from the environment at run time (.env with compose, the app-secrets Secret on Kubernetes).

# --- build: compile TypeScript with every dependency ------------------------------------------
FROM node:22.23.3-bookworm-slim AS build
WORKDIR /app
# bcrypt and sqlite3 are native modules: node-gyp needs python3, make and g++ when no prebuilt fits.
RUN apt-get update \
	&& apt-get install -y --no-install-recommends python3 make g++ \
	&& rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json moleculer.config.ts ./
COPY lib ./lib
COPY mixins ./mixins
COPY services ./services
COPY scripts ./scripts
COPY types ./types
RUN npm run build

# --- runtime: production dependencies only, non-root ------------------------------------------
FROM node:22.23.3-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# `npm ci --omit=dev` here, in this stage, with the native build tools installed and removed again in
# the same layer (the official node images' own pattern): the image carries no compiler, and the
# native modules are built against this exact base. They link only libstdc++ and libc, which node
# itself needs (kept by the base image); loading them is the last step, so a library removed by the
# purge would fail the build, not the first request.
RUN set -eux; \
	saved="$(apt-mark showmanual)"; \
	apt-get update; \
	apt-get install -y --no-install-recommends python3 make g++; \
	npm ci --omit=dev --no-audit --no-fund; \
	npm cache clean --force; \
	apt-mark auto '.*' > /dev/null; \
	[ -z "$saved" ] || apt-mark manual $saved > /dev/null; \
	apt-get purge -y --auto-remove -o APT::AutoRemove::RecommendsImportant=false; \
	rm -rf /var/lib/apt/lists/* /root/.npm /root/.cache /tmp/*; \
	node -e "require('bcrypt'); require('sqlite3')"
# Code stays owned by root (the app cannot rewrite itself); only DATA_DIR is the app user's.
COPY --from=build /app/dist ./dist
COPY public ./public
RUN mkdir -p /app/data && chown node:node /app/data
# The node image's `node` user: uid 1000, the runAsUser of the Kubernetes manifests.
USER node
# Every node answers probes on HEALTH_PORT: /live (the event loop answers) and /ready.
ENV HEALTH_PORT=9000
EXPOSE 8000 9000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
	CMD ["node", "-e", "fetch('http://127.0.0.1:'+process.env.HEALTH_PORT+'/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node itself is PID 1 and handles SIGTERM (Moleculer drains, then exits); no npm in between.
CMD ["node", "--experimental-async-context-frame", "node_modules/moleculer/bin/moleculer-runner.js", "--config", "dist/moleculer.config.js", "dist/services"]
