// Checks KEDA objects against KEDA's own schemas (@kubernetes-models/keda, generated from
// KEDA's CRDs). Reads a JSON array of Kubernetes objects on stdin, skips the other kinds,
// prints one line per problem and exits 1 when there is any.
//   kubectl kustomize deploy/kubernetes/overlays/production | yq -o json -s '.' | node validate.mjs
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const problems = [];
let checked = 0;
for (const object of JSON.parse(input)) {
  if (object.apiVersion !== "keda.sh/v1alpha1") continue;
  const Kind = keda[object.kind];
  const name = `${object.kind}/${object.metadata?.name}`;
  if (!Kind) { problems.push(`${name}: KEDA has no such kind`); continue; }
  try { new Kind(object).validate(); checked += 1; } catch (err) { problems.push(`${name}: ${err.message}`); }
}
console.log(problems.length ? problems.join("\n") : `${checked} KEDA objects valid`);
process.exit(problems.length ? 1 : 0);
