//go:build tools

// Package tools keeps the prometheus command package in this wrapper module's build list.
package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
