#!/usr/bin/env bash
# Fetches, pinned, the JSON schemas kubeconform validates the rendered chart against, into .cache/k8s-schemas:
#   - Kubernetes: the schemas the PyPI package kubernetes-validate vendors (one directory per Kubernetes
#     version), rewritten so their references resolve as files (they point at kubernetes.io by $id);
#   - ServiceMonitor and PrometheusRule: the CRDs in the Prometheus Operator's Go module (the tests turn
#     their openAPIV3Schema into JSON schemas).
# Run by scripts/deps.sh; does nothing when the pinned versions are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

package=kubernetes-validate==1.37.0
versions="v1.30.0 v1.37.0"
operator=github.com/prometheus-operator/prometheus-operator@v0.85.0
dir=.cache/k8s-schemas
stamp="$package $versions $operator"
if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$stamp" ]; then
  exit 0
fi
echo "deps.sh: fetching Kubernetes schemas ($package) and the Prometheus Operator CRDs ($operator)" >&2
rm -rf "$dir"
mkdir -p "$dir/download" "$dir/crds"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: -d "$dir/download" "$package" >&2
python3 - "$dir" $versions <<'PY'
import glob, json, os, sys, zipfile
out, versions = sys.argv[1], sys.argv[2:]
wheel = zipfile.ZipFile(glob.glob(os.path.join(out, "download", "kubernetes_validate-*.whl"))[0])
prefix = "kubernetes_validate/kubernetes-json-schema/"
count = 0
for name in wheel.namelist():
    for v in versions:
        src = prefix + v + "-local-strict/"
        if name.startswith(src) and name.endswith(".json"):
            schema = json.loads(wheel.read(name))
            schema.pop("$id", None)  # without it, references resolve next to the file
            text = json.dumps(schema).replace('"/api/_definitions.json#', '"_definitions.json#')
            path = os.path.join(out, v + "-local-strict", name[len(src):])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            count += 1
if count == 0:
    sys.exit("schemas.sh: no schemas for %s in the wheel" % versions)
PY
# From outside any module, so the project's go.mod and go.sum stay as they are.
mod=$(cd "$(mktemp -d)" && go mod download -json "$operator" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
for crd in servicemonitors prometheusrules; do
  cp "$mod/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" "$dir/crds/"
done
chmod -R u+w "$dir"
rm -rf "$dir/download"
echo "$stamp" >"$dir/.complete"
