// Writes a gzip (`.gz`) and a Brotli (`.br`) copy next to every compressible file of
// dist/, at the highest levels, once per build. `storeplane serve` embeds them and sends
// the copy the browser accepts (Content-Encoding, Vary: Accept-Encoding), so the
// dashboard goes over the wire compressed without compressing anything per request.
// Copies that would not be smaller are not written.
//
//   node scripts/precompress.mjs [dist-dir]
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

/** The extensions whose files compress (text); images and fonts are compressed already. */
export const COMPRESSIBLE = new Set([".html", ".js", ".mjs", ".css", ".json", ".map", ".svg", ".txt", ".webmanifest"]);
/** The extensions of the copies this script writes (which size.mjs does not count). */
export const ENCODED = new Set([".gz", ".br"]);

/** Every file under `dir`, recursively. @param {string} dir @returns {string[]} */
export function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

/** @param {string} dist @returns {number} how many copies were written */
export function precompress(dist) {
  let written = 0;
  for (const path of walk(dist)) {
    if (!COMPRESSIBLE.has(extname(path))) continue;
    const data = readFileSync(path);
    const copies = {
      ".gz": gzipSync(data, { level: constants.Z_BEST_COMPRESSION }),
      ".br": brotliCompressSync(data, {
        params: {
          [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
          [constants.BROTLI_PARAM_SIZE_HINT]: data.length,
        },
      }),
    };
    for (const [ext, bytes] of Object.entries(copies)) {
      if (bytes.length < data.length) {
        writeFileSync(path + ext, bytes);
        written++;
      }
    }
  }
  return written;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dist = process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), "..", "dist");
  console.log(`precompressed: ${precompress(dist)} .gz/.br copies in ${dist}`);
}
