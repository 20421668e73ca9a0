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
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return 0, fmt.Errorf("read the CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return 0, fmt.Errorf("no certificate in %s", t.CAFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	var sum float64
	for _, n := range t.Nodes {
		if n.HTTPAddr == "" {
			return 0, fmt.Errorf("node %s: no HTTP address for /metrics", n.GRPCAddr)
		}
		v, err := nodeCPU(ctx, hc, "https://"+n.HTTPAddr+"/metrics", t.Token)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

func nodeCPU(ctx context.Context, hc *http.Client, url, token string) (float64, error) {
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
		if v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("GET %s: process_cpu_seconds_total %q: %w", url, v, err)
			}
			return f, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	return 0, fmt.Errorf("GET %s: no process_cpu_seconds_total", url)
}
