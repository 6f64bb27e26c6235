// The web client's build. `npm run dev` serves it with live reload and sends API calls to
// a running `server all` (its gateway, port 5000, or TAPROOM_GATEWAY), so the browser sees
// one origin as it does in production. `npm run build` writes dist/, which the gateway
// embeds: file names carry no hash (the server names them in its code) and the output is
// the same for the same sources and lockfile, so CI can check the committed copy is fresh.
import { defineConfig } from "vite";

const gateway = process.env.TAPROOM_GATEWAY ?? "http://127.0.0.1:5000";

export default defineConfig({
  esbuild: { jsx: "automatic" },
  server: {
    port: 5173,
    strictPort: true,
    proxy: {
      "/v1": gateway,
      "/.well-known": gateway,
    },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    modulePreload: { polyfill: false },
    rollupOptions: {
      output: {
        entryFileNames: "assets/app.js",
        chunkFileNames: "assets/[name].js",
        assetFileNames: "assets/app[extname]",
      },
    },
  },
});
