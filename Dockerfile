# Outrigger image: one image for every role (control plane, sidecar, demo app); the compose service's
# `command` picks the subcommand. Build: docker build -t outrigger:local .
# BASE_IMAGE is any Debian-like image with Node.js 24, npm and a `node` user; the default is the official one.
# (`npm run test:compose` builds on an equivalent made offline with debootstrap: scripts/compose-base.sh.)
ARG BASE_IMAGE=node:24-slim

# --- build: full install (TypeScript, buf, ts-proto), generate the wire code, compile to dist/
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

# --- runtime: production dependencies and the compiled output only
FROM ${BASE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
# The dashboard's page (served as is, not compiled); uPlot comes from node_modules.
COPY control-plane/dashboard ./control-plane/dashboard
COPY bin ./bin
# The control plane keeps its state here (a named volume in docker-compose.yml); owned by the unprivileged user.
RUN mkdir -p /var/lib/outrigger /etc/outrigger && chown node:node /var/lib/outrigger
USER node
# 15000 sidecar admin, 15001 outbound, 15006 inbound, 15010 control plane gRPC, 15080 control plane HTTP
EXPOSE 15000 15001 15006 15010 15080
ENTRYPOINT ["node", "bin/outrigger.js"]
CMD ["help"]
