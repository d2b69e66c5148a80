// Package k8s tests the Kubernetes manifests that `vmre remote k8s` prints
// with Kubernetes' own code: decoded strictly into the API's types
// (k8s.io/api), names checked by k8s.io/apimachinery's validation, and the
// pod checked by the Pod Security admission's evaluator
// (k8s.io/pod-security-admission/policy, level restricted, version latest),
// the code the API server runs. It is a module of its own so that the
// k8s.io modules stay out of vmre's go.mod; `make test` runs it.
package k8s
