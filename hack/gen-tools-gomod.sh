#!/usr/bin/env bash
# Regenerates the Go wrapper modules under hack/tools/ from hack/versions.env.
# k8s.io/kubernetes refers to its staging modules as v0.0.0 with local `replace` lines that do not
# apply to a dependent module; we derive the matching `replace k8s.io/X => k8s.io/X v0.MINOR.PATCH`
# lines from k8s.io/kubernetes's own go.mod.
set -euo pipefail
cd "$(dirname "$0")"
source ./versions.env
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
staging_version="v0.${K8S_VERSION#v1.}"

gen() {  # gen DIR MODULE VERSION PACKAGES...
  local dir=$1 mod=$2 ver=$3; shift 3
  rm -f "tools/$dir/go.mod" "tools/$dir/go.sum"
  (cd "tools/$dir" && go mod init "quartermaster.dev/hack/tools/$dir" >/dev/null 2>&1 && go mod edit -go=1.26.0)
  if [[ $dir == kubernetes ]]; then
    local gomod; gomod=$(cd "tools/$dir" && go mod download -json "k8s.io/kubernetes@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}' | while read -r m; do
      (cd "tools/$dir" && go mod edit -replace "$m=$m@$staging_version")
    done
  fi
  for p in "$@"; do (cd "tools/$dir" && go get "$p@$ver"); done
}

gen kubernetes k8s.io/kubernetes "$K8S_VERSION" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
gen etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
gen kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
gen helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
