//go:build tools

// Package tools keeps Karpenter's kwok provider (sigs.k8s.io/karpenter/kwok) in this wrapper
// module's build list.
package tools

import _ "sigs.k8s.io/karpenter/kwok"
