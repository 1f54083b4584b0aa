// Vite builds the dashboard into dist/, which `storeplane serve` serves at `/` (embedded
// in the binary, or from --dashboard-dir). No framework plugin: Vite 8's oxc transform
// compiles TSX with React's automatic JSX runtime, which is all the app needs.
import { defineConfig } from "vitest/config";

// `npm run dev` proxies the API to a running `storeplane serve` (STOREPLANE_URL,
// default http://127.0.0.1:8080) so the page and the API share an origin, as in
// production.
const api = process.env.STOREPLANE_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  oxc: { jsx: { runtime: "automatic", importSource: "react" } },
  build: {
    outDir: "dist",
    assetsDir: "assets",
    sourcemap: false,
    target: "es2022",
    // One small app: a single JS chunk loads fastest (no waterfall).
    modulePreload: { polyfill: false },
  },
  server: {
    proxy: {
      "/api": { target: api, changeOrigin: false },
      "/health": api,
      "/ready": api,
      "/docs": api,
    },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    restoreMocks: true,
    // The machine is shared (2 cores); typing with user-event is slow when it is busy.
    testTimeout: 30_000,
  },
});
