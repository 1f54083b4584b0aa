// Fails when src/api/schema.d.ts is not what openapi-typescript generates from
// ../openapi/openapi.json today, so a build never ships a client that disagrees with the
// spec. Regenerates into a temporary file with the same command as `npm run gen`.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const spec = join(root, "..", "openapi", "openapi.json");
const committed = join(root, "src", "api", "schema.d.ts");
const tmp = mkdtempSync(join(tmpdir(), "storeplane-gen-"));
const fresh = join(tmp, "schema.d.ts");

try {
  execFileSync(
    process.execPath,
    [join(root, "node_modules", "openapi-typescript", "bin", "cli.js"), spec, "--output", fresh],
    { cwd: root, stdio: ["ignore", "ignore", "inherit"] },
  );
  const want = readFileSync(fresh, "utf8");
  const have = existsSync(committed) ? readFileSync(committed, "utf8") : "";
  if (want !== have) {
    console.error("error: the API client is stale: run `npm run gen` (in dashboard/) and commit src/api/schema.d.ts");
    process.exit(1);
  }
  console.log("the API client matches openapi/openapi.json");
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
