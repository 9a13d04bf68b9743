#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# kwok, kwokctl, helm) from Go modules pinned in hack/tools/*/go.mod, into a per-version cache outside
# the repository. Binaries that already exist are not rebuilt. Prints the cache's bin directory last.
#
#   hack/build-binaries.sh            build what is missing
#   QM_CACHE_DIR=/path hack/build-...  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/quartermaster)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/versions.env"
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -trimpath" CGO_ENABLED=0

die() {  # die STEP COMMAND HINT
  printf '\nbuild-binaries: FAILED at step "%s"\n  command: %s\n  fix: %s\n' "$1" "$2" "$3" >&2
  exit 1
}

command -v go >/dev/null 2>&1 || die "find Go toolchain" "go version" \
  "install Go >= 1.26 (https://go.dev/doc/install) and put it on PATH; GOTOOLCHAIN=local is used, so no toolchain is downloaded"
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
(( go_minor >= 26 )) || die "check Go version" "go env GOVERSION -> $(go env GOVERSION)" "Kubernetes $K8S_VERSION needs Go >= 1.26"

bin=$(python3 "$here/cache_dir.py")
mkdir -p "$bin"
k8s_minor=$(echo "$K8S_VERSION" | cut -d. -f2)
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)

build() {  # build MODULE_DIR OUTPUT PACKAGE LDFLAGS
  local dir=$1 out=$2 pkg=$3 ldflags=$4
  [[ -x "$bin/$out" ]] && return 0
  local log; log=$(mktemp)
  local start=$SECONDS
  printf 'building %-24s from %s ... ' "$out" "$pkg" >&2
  (cd "$here/tools/$dir" && go mod download) >"$log" 2>&1 || {
    tail -20 "$log" >&2
    die "download modules for $out" "cd hack/tools/$dir && go mod download" \
      "check access to the Go module proxy (GOPROXY=$(go env GOPROXY)); rerun, downloads are cached"
  }
  (cd "$here/tools/$dir" && go build -ldflags "-s -w $ldflags" -o "$bin/$out.tmp" "$pkg") >"$log" 2>&1 || {
    tail -30 "$log" >&2
    rm -f "$bin/$out.tmp"
    die "build $out" "cd hack/tools/$dir && go build -o $bin/$out $pkg" \
      "read the compiler output above; a stale cache can be removed with 'make clean-binaries'"
  }
  mv "$bin/$out.tmp" "$bin/$out"
  rm -f "$log"
  printf 'done in %ss\n' "$((SECONDS - start))" >&2
}

cb=k8s.io/component-base/version
cg=k8s.io/client-go/pkg/version
k8s_ld="-X $cb.gitVersion=$K8S_VERSION -X $cb.gitMajor=1 -X $cb.gitMinor=$k8s_minor -X $cb.gitTreeState=clean -X $cb.buildDate=$build_date"
k8s_ld+=" -X $cg.gitVersion=$K8S_VERSION -X $cg.gitMajor=1 -X $cg.gitMinor=$k8s_minor -X $cg.gitTreeState=clean -X $cg.buildDate=$build_date"
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build kubernetes "$c" "k8s.io/kubernetes/cmd/$c" "$k8s_ld"
done
build etcd etcd go.etcd.io/etcd/server/v3 ""
kwok_ld="-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "$kwok_ld"
build kwok kwokctl sigs.k8s.io/kwok/cmd/kwokctl "$kwok_ld"
hv=helm.sh/helm/v3
helm_ld="-X $hv/internal/version.version=$HELM_VERSION -X $hv/internal/version.gitTreeState=clean"
helm_ld+=" -X $hv/pkg/lint/rules.k8sVersionMajor=1 -X $hv/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
helm_ld+=" -X $hv/pkg/chartutil.k8sVersionMajor=1 -X $hv/pkg/chartutil.k8sVersionMinor=$k8s_minor"
build helm helm helm.sh/helm/v3/cmd/helm "$helm_ld"

# kwok needs Stage objects to know how to play the kubelet: take the upstream "fast" node and pod stages
# and the lease heartbeat from the pinned kwok module.
stages="$bin/../kwok-stages.yaml"
if [[ ! -s "$stages" ]]; then
  kwok_dir=$(cd "$here/tools/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok) ||
    die "locate the kwok module" "cd hack/tools/kwok && go list -m sigs.k8s.io/kwok" "run 'go mod download' there"
  s="$kwok_dir/kustomize/stage"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cat "$s/$f"; echo "---"
  done > "$stages.tmp" && mv "$stages.tmp" "$stages"
fi
echo "$bin"
