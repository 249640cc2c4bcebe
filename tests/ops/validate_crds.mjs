// Validates ServiceMonitor, PodMonitor and PrometheusRule objects against the prometheus-operator CRD
// schemas, as compiled into the npm package @kubernetes-models/prometheus-operator (validators generated
// from the upstream CRDs' openAPIV3Schema: types, enums, patterns, required fields). Like the CRDs
// themselves, the schemas do not reject unknown fields (the API server prunes them).
//
// Usage: OPS_NODE_MODULES=<dir with node_modules> node validate_crds.mjs objects.json
// objects.json: [{"source": "...", "doc": {...}}, ...] as written by validate_manifests.py.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const pkg = "@kubernetes-models/prometheus-operator";
const dir = join(process.env.OPS_NODE_MODULES, pkg);
const version = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).version;

const kinds = {};
for (const kind of ["ServiceMonitor", "PodMonitor", "PrometheusRule"]) {
  const mod = await import(pathToFileURL(join(dir, "monitoring.coreos.com", "v1", `${kind}.js`)).href);
  kinds[kind] = mod[kind];
}

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failures = 0;
const counts = {};
for (const { source, doc } of objects) {
  const where = `${source} ${doc.kind}/${doc.metadata?.name}`;
  const Model = kinds[doc.kind];
  if (!Model || doc.apiVersion !== "monitoring.coreos.com/v1") {
    console.log(`FAIL  ${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
    failures++;
    continue;
  }
  try {
    new Model(doc).validate();
    counts[doc.kind] = (counts[doc.kind] || 0) + 1;
  } catch (e) {
    console.log(`FAIL  ${where}: ${e.message}`);
    failures++;
  }
}
const summary = Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ");
if (failures === 0) {
  console.log(`PASS  prometheus-operator CRD schemas (${pkg}@${version}): ${summary}`);
}
process.exit(failures ? 1 : 0);
