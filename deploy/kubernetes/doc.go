// Package kubernetes holds liveroom's Kubernetes manifests (the YAML files
// beside this one) and the test that decodes each of them strictly into the
// Kubernetes API types and checks how they fit together. See README.md.
package kubernetes
