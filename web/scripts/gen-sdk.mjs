// The TypeScript SDK's types, for `cargo xtask gen` (xtask/src/typescript.rs): reads
// {"<service>": <bundled OpenAPI document>, ...} as JSON on stdin and writes
// {"<service>": "<TypeScript source>", ...} as JSON on stdout. One process for every
// service, so generating costs one node start-up.
import openapiTS, { astToString } from "openapi-typescript";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const specs = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const out = {};
for (const [service, doc] of Object.entries(specs)) {
  const ast = await openapiTS(doc, { silent: true });
  out[service] = astToString(ast);
}
process.stdout.write(JSON.stringify(out));
