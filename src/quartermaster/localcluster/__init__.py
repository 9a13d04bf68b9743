"""A real local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)
built from Go modules, with fake GPU node pools. Used by `make cluster-up`, the tests and the demo."""
