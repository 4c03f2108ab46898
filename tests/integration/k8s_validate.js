// Validate Kubernetes objects (a JSON array on stdin) against the schemas of
// the npm package kubernetes-models; prints one line per invalid object and
// exits 1 if any. Run by test_deploy_kubernetes.py with NODE_PATH set.
const fs = require("fs");
const docs = JSON.parse(fs.readFileSync(0, "utf8"));
let bad = 0;
for (const doc of docs) {
  const [group, version] = doc.apiVersion.includes("/") ? doc.apiVersion.split("/") : [null, doc.apiVersion];
  const module = "kubernetes-models/" + (group ? group + "/" : "") + version + "/" + doc.kind;
  let Model;
  try {
    Model = require(module)[doc.kind];
  } catch (e) {
    console.log(`${doc.kind}/${doc.metadata.name}: no schema (${module})`);
    bad++;
    continue;
  }
  try {
    new Model(doc).validate();
  } catch (e) {
    console.log(`${doc.kind}/${doc.metadata.name}: ${e.message.split("\n")[0]}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
