//go:build tools

// Package tools keeps the kwok command package in this wrapper module's build list.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
