package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/trustfed/trustfed/internal/testutil/testserver"
	"github.com/trustfed/trustfed/server"
)

// k8sObjects are the manifests of deploy/kubernetes, strictly decoded.
type k8sObjects struct {
	sts       *appsv1.StatefulSet
	services  map[string]*corev1.Service
	configMap *corev1.ConfigMap
	pdb       *policyv1.PodDisruptionBudget
	netpol    *networkingv1.NetworkPolicy
}

// decodeManifests decodes every document of every file strictly (an
// unknown or misspelt field, a duplicate key or a wrong type fails) into
// the Kubernetes API type its kind names.
func decodeManifests(t *testing.T, dir string) k8sObjects {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out := k8sObjects{services: map[string]*corev1.Service{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			require.NoError(t, yaml.Unmarshal([]byte(doc), &meta), "%s #%d", f, i)
			where := fmt.Sprintf("%s #%d (%s %s)", f, i, meta.APIVersion, meta.Kind)
			var obj any
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 StatefulSet":
				out.sts = &appsv1.StatefulSet{}
				obj = out.sts
			case "v1 Service":
				svc := &corev1.Service{}
				obj = svc
				defer func() { out.services[svc.Name] = svc }()
			case "v1 ConfigMap":
				out.configMap = &corev1.ConfigMap{}
				obj = out.configMap
			case "policy/v1 PodDisruptionBudget":
				out.pdb = &policyv1.PodDisruptionBudget{}
				obj = out.pdb
			case "networking.k8s.io/v1 NetworkPolicy":
				out.netpol = &networkingv1.NetworkPolicy{}
				obj = out.netpol
			default:
				t.Fatalf("%s: a kind this test does not know: add it", where)
			}
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), obj), where)
		}
	}
	return out
}

// TestKubernetesManifests: the manifests decode strictly into the API
// types, and agree with each other and with the server: the config file
// holds only known settings, the ports the server listens on are the
// container's, Service's and NetworkPolicy's, the selectors select the
// pods, the TLS files come from the Secret, and every probe path answers
// 200 on a real server.
func TestKubernetesManifests(t *testing.T) {
	objs := decodeManifests(t, "../../deploy/kubernetes")
	sts, cm, pdb, np := objs.sts, objs.configMap, objs.pdb, objs.netpol
	require.NotNil(t, sts, "a StatefulSet")
	require.NotNil(t, cm, "a ConfigMap")
	require.NotNil(t, pdb, "a PodDisruptionBudget")
	require.NotNil(t, np, "a NetworkPolicy")
	podLabels := labels.Set(sts.Spec.Template.Labels)

	// Stable identities and volumes.
	require.EqualValues(t, 3, *sts.Spec.Replicas)
	require.Equal(t, appsv1.ParallelPodManagement, sts.Spec.PodManagementPolicy)
	headless := objs.services[sts.Spec.ServiceName]
	require.NotNil(t, headless, "the StatefulSet's serviceName is a Service")
	require.Equal(t, corev1.ClusterIPNone, headless.Spec.ClusterIP)
	require.True(t, headless.Spec.PublishNotReadyAddresses)
	require.Len(t, sts.Spec.VolumeClaimTemplates, 1)
	sel, err := metaSelector(sts.Spec.Selector.MatchLabels)
	require.NoError(t, err)
	require.True(t, sel.Matches(podLabels))

	c := sts.Spec.Template.Spec.Containers[0]
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	require.Equal(t, sts.Spec.VolumeClaimTemplates[0].Name, "data")
	require.True(t, c.SecurityContext.ReadOnlyRootFilesystem != nil && *c.SecurityContext.ReadOnlyRootFilesystem)
	require.False(t, *c.SecurityContext.AllowPrivilegeEscalation)

	// The server's settings: the ConfigMap's file, then the pod's
	// variables (for trustfed-1), as the server reads them.
	cfgPath := filepath.Join(t.TempDir(), "trustfed.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cm.Data["trustfed.yaml"]), 0o600))
	env := map[string]string{"POD_NAME": "trustfed-1", "POD_NAMESPACE": "trustfed"}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = regexp.MustCompile(`\$\((\w+)\)`).ReplaceAllStringFunc(e.Value, func(s string) string { return env[s[2:len(s)-1]] })
		}
	}
	require.Equal(t, []string{"server", "-config", mounts["config"].MountPath + "/trustfed.yaml"}, c.Args)
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cfg := server.DefaultConfig()
	registerServerFlags(fs, &cfg)
	s := &serverSettings{fs: fs, explicit: map[string]bool{}}
	s.applyFile(cfgPath)
	s.applyEnv(func(k string) string { return env[k] })
	require.NoError(t, s.err())
	require.NoError(t, cfg.Validate())
	require.Equal(t, "trustfed-1", cfg.NodeID)
	require.Equal(t, mounts["data"].MountPath, cfg.DataDir, "the data dir is the persistent volume")
	require.Equal(t, "trustfed-0", cfg.BootstrapNode)
	require.True(t, strings.HasPrefix(cfg.Join, "trustfed-0."+headless.Name+":"), "the others join trustfed-0 by its stable name: %s", cfg.Join)
	require.Equal(t, "trustfed-1.trustfed.trustfed.svc:7000", cfg.AdvertiseRaft)

	// TLS files are in the Secret's volume.
	var secretVol *corev1.Volume
	for i, v := range sts.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secretVol = &sts.Spec.Template.Spec.Volumes[i]
		}
		if v.ConfigMap != nil {
			require.Equal(t, cm.Name, v.ConfigMap.Name)
		}
	}
	require.NotNil(t, secretVol, "TLS material from a Secret")
	for _, f := range []string{cfg.TLSCA, cfg.TLSCert, cfg.TLSKey, cfg.TLSCAKey} {
		require.Equal(t, mounts[secretVol.Name].MountPath, filepath.Dir(f), "%s is in the Secret's volume", f)
	}

	// Ports: what the server binds = the container's named ports = the
	// headless Service's = the NetworkPolicy's.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for name, addr := range map[string]string{"raft": cfg.RaftAddr, "grpc": cfg.GRPCAddr, "http": cfg.HTTPAddr} {
		_, port, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		require.Equal(t, port, strconv.Itoa(int(ports[name])), "container port %s is the server's %s", name, addr)
	}
	for _, svc := range objs.services {
		sel, err := metaSelector(svc.Spec.Selector)
		require.NoError(t, err)
		require.True(t, sel.Matches(podLabels), "Service %s selects the pods", svc.Name)
		for _, p := range svc.Spec.Ports {
			require.Equal(t, intstr.FromString(p.Name), p.TargetPort, "Service %s port %s", svc.Name, p.Name)
			require.Equal(t, ports[p.Name], p.Port, "Service %s port %s", svc.Name, p.Name)
		}
	}
	npSel, err := metaSelector(np.Spec.PodSelector.MatchLabels)
	require.NoError(t, err)
	require.True(t, npSel.Matches(podLabels))
	allowed := map[int32]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			allowed[p.Port.IntVal] = true
			if p.Port.IntVal == ports["raft"] {
				require.Len(t, rule.From, 1, "Raft only from the servers")
				peerSel, err := metaSelector(rule.From[0].PodSelector.MatchLabels)
				require.NoError(t, err)
				require.True(t, peerSel.Matches(podLabels))
			}
		}
	}
	for name, p := range ports {
		require.True(t, allowed[p], "the NetworkPolicy lets port %s (%d) in", name, p)
	}
	pdbSel, err := metaSelector(pdb.Spec.Selector.MatchLabels)
	require.NoError(t, err)
	require.True(t, pdbSel.Matches(podLabels))
	require.Equal(t, 1, pdb.Spec.MaxUnavailable.IntValue(), "one server down at a time keeps 2 of 3")

	// Probes: HTTPS on the http port, paths a real server answers 200 on.
	probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
	d := testserver.StartDev(t)
	for name, p := range probes {
		require.NotNil(t, p, name+" probe")
		g := p.HTTPGet
		require.NotNil(t, g, name+" probe is an HTTP GET")
		require.Equal(t, corev1.URISchemeHTTPS, g.Scheme, name)
		require.Equal(t, intstr.FromString("http"), g.Port, name)
		code, body := d.Get(t, g.Path)
		require.Equal(t, http.StatusOK, code, "%s probe %s on a real server: %s", name, g.Path, body)
	}
	require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
}

func metaSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return nil, fmt.Errorf("empty selector")
	}
	return labels.SelectorFromSet(m), nil
}

// TestKubernetesStrictDecoding: the decoding above refuses a misspelt
// field (what it is there to catch).
func TestKubernetesStrictDecoding(t *testing.T) {
	b, err := os.ReadFile("../../deploy/kubernetes/pdb.yaml")
	require.NoError(t, err)
	bad := bytes.Replace(b, []byte("maxUnavailable"), []byte("maxUnavailabel"), 1)
	require.Error(t, yaml.UnmarshalStrict(bad, &policyv1.PodDisruptionBudget{}))
	require.NoError(t, yaml.UnmarshalStrict(b, &policyv1.PodDisruptionBudget{}))
}
