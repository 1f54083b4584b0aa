//go:build tools

// Package tools pins the commands built from this module; the build tag keeps it
// out of every build, 'go mod tidy' still records their dependencies.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
