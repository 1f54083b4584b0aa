//go:build tools

// Package tools pins the command built from this module; the build tag keeps it out of
// every build, 'go mod tidy' still records its dependencies.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
