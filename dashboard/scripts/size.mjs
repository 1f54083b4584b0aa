// The production bundle's size: every file in dist/, raw and gzipped (node's zlib, level
// 9 — what a compressing proxy or `gzip -9` sends), and the total. Fails when the gzipped
// total is over the budget (250 KB = 250,000 bytes). The precompressed copies
// (scripts/precompress.mjs) are other encodings of the same files and are not counted.
//
//   node scripts/size.mjs [--json] [dist-dir]
import { readFileSync } from "node:fs";
import { dirname, extname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync, constants } from "node:zlib";
import { ENCODED, walk } from "./precompress.mjs";

export const BUDGET_GZIP_BYTES = 250_000;

/**
 * @param {string} dist
 * @returns {{ files: { file: string, raw: number, gzip: number }[], raw: number, gzip: number }}
 */
export function measure(dist) {
  const files = walk(dist)
    .filter((path) => !ENCODED.has(extname(path)))
    .sort()
    .map((path) => {
      const data = readFileSync(path);
      return {
        file: relative(dist, path),
        raw: data.length,
        gzip: gzipSync(data, { level: constants.Z_BEST_COMPRESSION }).length,
      };
    });
  if (files.length === 0) throw new Error(`${dist} is empty: run \`npm run build\` first`);
  return {
    files,
    raw: files.reduce((n, f) => n + f.raw, 0),
    gzip: files.reduce((n, f) => n + f.gzip, 0),
  };
}

/** @param {number} n */
export const kb = (n) => `${(n / 1000).toFixed(1)} KB`;

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const json = args.includes("--json");
  const dist = args.find((a) => !a.startsWith("--")) ?? join(dirname(fileURLToPath(import.meta.url)), "..", "dist");
  const m = measure(dist);
  if (json) {
    console.log(JSON.stringify({ ...m, budget_gzip: BUDGET_GZIP_BYTES }, null, 2));
  } else {
    for (const f of m.files) console.log(`${f.file.padEnd(40)} ${kb(f.raw).padStart(10)} ${kb(f.gzip).padStart(10)} gz`);
    console.log(`${"total".padEnd(40)} ${kb(m.raw).padStart(10)} ${kb(m.gzip).padStart(10)} gz (budget ${kb(BUDGET_GZIP_BYTES)} gz)`);
  }
  if (m.gzip > BUDGET_GZIP_BYTES) {
    console.error(`error: the dashboard is ${kb(m.gzip)} gzipped, over the ${kb(BUDGET_GZIP_BYTES)} budget`);
    process.exit(1);
  }
}
