package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
)

// k8sConfig is what vmre remote k8s renders, checked.
type k8sConfig struct {
	name, namespace, image string
	port                   int
	uid                    int
	cpuRequest, memRequest string
	cpuLimit, memLimit     string
	secretOnly             bool
}

// dns1035Label is a Kubernetes name that suits every object vmre renders:
// a Service's name must be a DNS label that starts with a letter (RFC
// 1035), which is also a valid name for a Secret, a Deployment and its
// pods, and a label value.
var dns1035Label = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

// dns1123Label is a namespace's name.
var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// quantity is a Kubernetes resource quantity, such as 100m, 0.5, 128Mi or
// 1e3 (k8s.io/apimachinery/pkg/api/resource's grammar).
var quantity = regexp.MustCompile(`^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$`)

// imageRef is what --image takes: no space, quote or control character.
var imageRef = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$`)

// checkK8s checks the flags of vmre remote k8s; its errors name the flag
// to fix and the rule.
func checkK8s(vmName string, f *remoteFlags) (k8sConfig, error) {
	k := k8sConfig{name: f.k8sName, namespace: f.namespace, image: f.image, port: f.port, uid: f.uid,
		cpuRequest: f.cpuRequest, memRequest: f.memRequest, cpuLimit: f.cpuLimit, memLimit: f.memLimit, secretOnly: f.secretOnly}
	flag := "--name"
	if k.name == "" {
		k.name, flag = vmName, "the VM's name"
	}
	const rule = "a DNS label that starts with a letter (RFC 1035), as a Service's name must be: " +
		"at most 63 characters, lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"
	switch {
	case len(k.name) > 63 || !dns1035Label.MatchString(k.name):
		hint := ""
		if s := suggestK8sName(k.name); s != "" {
			hint = ", such as --name " + s
		}
		return k, fmt.Errorf("%s %q is not a Kubernetes name for the VM's objects: it must be %s; give one with --name%s", flag, k.name, rule, hint)
	case len(k.namespace) > 63 || !dns1123Label.MatchString(k.namespace):
		return k, fmt.Errorf("--namespace %q is not a namespace's name: it must be a DNS label (RFC 1123): at most 63 characters, lowercase letters, digits and '-', starting and ending with a letter or digit", k.namespace)
	case k.secretOnly:
		return k, nil
	case k.image == "":
		return k, fmt.Errorf("--image names the VM's container image")
	case !imageRef.MatchString(k.image):
		return k, fmt.Errorf("--image %q is not an image reference such as registry.example/vm:1.2", k.image)
	case k.port < 1 || k.port > 65535:
		return k, fmt.Errorf("--port %d: want a port from 1 to 65535", k.port)
	case k.uid < 1:
		return k, fmt.Errorf("--uid %d: the VM runs as a user other than root (the restricted Pod Security profile): give an id of 1 or more", k.uid)
	}
	for _, q := range []struct{ flag, v string }{{"--cpu-request", k.cpuRequest}, {"--memory-request", k.memRequest}, {"--cpu-limit", k.cpuLimit}, {"--memory-limit", k.memLimit}} {
		if !quantity.MatchString(q.v) {
			return k, fmt.Errorf("%s %q is not a Kubernetes quantity such as 250m, 1, 128Mi or 1Gi", q.flag, q.v)
		}
	}
	return k, nil
}

// suggestK8sName is name made into a DNS-1035 label, or "".
func suggestK8sName(name string) string {
	s := strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(name), "-"), "-")
	s = strings.TrimLeft(s, "0123456789-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	if !dns1035Label.MatchString(s) {
		return ""
	}
	return s
}

// writeK8s prints a Secret holding the VM's environment, and (unless
// secretOnly) a headless Service and a Deployment of one replica that runs
// the VM image with it under the restricted Pod Security profile.
func writeK8s(w io.Writer, en *adminv1.Enrollment, k k8sConfig) {
	ping := en.GetPing().AsDuration()
	fmt.Fprintf(w, `# The remote VM %[1]s of a vmre node, made by: vmre remote k8s %[1]s
# After vmre remote rotate %[1]s, apply the Secret alone and restart the pod:
#   vmre remote k8s --secret-only --namespace %[3]s %[1]s | kubectl apply -f -
#   kubectl -n %[3]s rollout restart deployment/%[2]s
apiVersion: v1
kind: Secret
metadata:
  name: vmre-%[2]s
  namespace: %[3]s
  labels:
    app.kubernetes.io/name: %[2]s
    app.kubernetes.io/managed-by: vmre
type: Opaque
stringData:
  %[4]s: %[5]q
  %[6]s: %[7]q
  %[8]s: %[9]q
`, en.GetName(), k.name, k.namespace, vmre.EngineAddressKey, en.GetEngineAddr(), vmre.EngineTokenKey, en.GetToken(),
		vmre.EngineCertKey, en.GetEngineCertSha256())
	if ping > 0 {
		fmt.Fprintf(w, "  %s: %q\n", vmre.EnginePingKey, ping.String())
	}
	if k.secretOnly {
		return
	}
	fmt.Fprintf(w, `---
# Callers inside the cluster find the pod as %[1]s.%[2]s.svc; the node
# publishes its pod IP and certificate (cert_sha256 in /v1/vms), which
# callers pin.
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: %[2]s
  labels:
    app.kubernetes.io/name: %[1]s
    app.kubernetes.io/managed-by: vmre
spec:
  clusterIP: None
  selector:
    app.kubernetes.io/name: %[1]s
  ports:
    - name: vm
      port: %[3]d
      targetPort: vm
      protocol: TCP
---
# One replica, recreated rather than rolled: two pods of one VM would share
# its token, and the second would be refused.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: %[2]s
  labels:
    app.kubernetes.io/name: %[1]s
    app.kubernetes.io/managed-by: vmre
spec:
  replicas: 1
  strategy:
    type: Recreate
  selector:
    matchLabels:
      app.kubernetes.io/name: %[1]s
  template:
    metadata:
      labels:
        app.kubernetes.io/name: %[1]s
        app.kubernetes.io/managed-by: vmre
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: 30
      securityContext:
        runAsNonRoot: true
        runAsUser: %[4]d
        runAsGroup: %[4]d
        fsGroup: %[4]d
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: vm
          image: %[5]q
          envFrom:
            - secretRef:
                name: vmre-%[1]s
          env:
            - name: %[6]s
              value: "0.0.0.0:%[3]d"
            - name: %[7]s
              valueFrom:
                fieldRef:
                  fieldPath: status.podIP
            - name: TMPDIR
              value: /tmp
          ports:
            - name: vm
              containerPort: %[3]d
              protocol: TCP
          resources:
            requests:
              cpu: %[8]q
              memory: %[9]q
            limits:
              cpu: %[10]q
              memory: %[11]q
          # The VM's grpc.health.v1 over TLS, as a GET (docs/REMOTE.md):
          # 200 while it serves, 503 otherwise.
          startupProbe:
            httpGet:
              scheme: HTTPS
              port: vm
              path: /grpc.health.v1.Health/Check
            periodSeconds: 2
            failureThreshold: 30
          readinessProbe:
            httpGet:
              scheme: HTTPS
              port: vm
              path: /grpc.health.v1.Health/Check
            periodSeconds: 10
            failureThreshold: 3
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        # The only place the VM writes: its read-only root keeps the rest.
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
`, k.name, k.namespace, k.port, k.uid, k.image, client.ListenAddrKey, client.AdvertiseAddrKey,
		k.cpuRequest, k.memRequest, k.cpuLimit, k.memLimit)
}
