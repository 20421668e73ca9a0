package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// ServerCPU is the sum of every node's process_cpu_seconds_total, read from
// its GET /metrics over HTTPS with the target's token.
func ServerCPU(ctx context.Context, t Target) (float64, error) {
	vs, err := nodeMetrics(ctx, t, "process_cpu_seconds_total")
	var sum float64
	for _, v := range vs {
		sum += v
	}
	return sum, err
}

// ServerRSS is every node's resident memory in MiB (process_resident_memory_bytes
// from its GET /metrics), in the order of t.Nodes.
func ServerRSS(ctx context.Context, t Target) ([]float64, error) {
	vs, err := nodeMetrics(ctx, t, "process_resident_memory_bytes")
	for i := range vs {
		vs[i] /= 1 << 20
	}
	return vs, err
}

// nodeMetrics reads metric from every node's GET /metrics over HTTPS with
// the target's token.
func nodeMetrics(ctx context.Context, t Target, metric string) ([]float64, error) {
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read the CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", t.CAFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	var out []float64
	for _, n := range t.Nodes {
		if n.HTTPAddr == "" {
			return nil, fmt.Errorf("node %s: no HTTP address for /metrics", n.GRPCAddr)
		}
		v, err := nodeMetric(ctx, hc, "https://"+n.HTTPAddr+"/metrics", t.Token, metric)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func nodeMetric(ctx context.Context, hc *http.Client, url, token, metric string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), metric+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("GET %s: %s %q: %w", url, metric, v, err)
			}
			return f, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	return 0, fmt.Errorf("GET %s: no %s", url, metric)
}
