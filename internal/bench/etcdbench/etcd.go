package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// etcdCluster is a set of etcd processes on loopback, data in dir.
type etcdCluster struct {
	dir     string
	clients []string // host:port of each member's client URL
	procs   []*exec.Cmd
	done    []chan struct{}
}

// startEtcd starts an n-member etcd cluster on free loopback ports and
// waits until every member answers a linearizable read.
func startEtcd(ctx context.Context, bin string, n int) (_ *etcdCluster, err error) {
	dir, err := os.MkdirTemp("", "trustfed-bench-etcd-")
	if err != nil {
		return nil, err
	}
	c := &etcdCluster{dir: dir}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	var peers, initial []string
	for i := range n {
		cp, err := freePort()
		if err != nil {
			return nil, err
		}
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		c.clients = append(c.clients, "127.0.0.1:"+cp)
		peers = append(peers, "http://127.0.0.1:"+pp)
		initial = append(initial, fmt.Sprintf("e%d=http://127.0.0.1:%s", i, pp))
	}
	for i := range n {
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("e%d.log", i)))
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, "--name", fmt.Sprintf("e%d", i), "--data-dir", filepath.Join(dir, fmt.Sprintf("e%d", i)),
			"--listen-client-urls", "http://"+c.clients[i], "--advertise-client-urls", "http://"+c.clients[i],
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--initial-cluster-token", "trustfed-bench",
			"--logger", "zap", "--log-outputs", "stderr")
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			_ = logf.Close()
			return nil, fmt.Errorf("start %s: %w", bin, err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); _ = logf.Close(); close(done) }()
		c.procs, c.done = append(c.procs, cmd), append(c.done, done)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, ep := range c.clients {
		conn, err := dial(ep)
		if err != nil {
			return nil, err
		}
		kv := pb.NewKVClient(conn)
		for {
			_, err = kv.Range(ctx, &pb.RangeRequest{Key: []byte("ready")})
			if err == nil || ctx.Err() != nil {
				break
			}
			select { // poll the member we started until it answers, bounded by ctx
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		_ = conn.Close()
		if err != nil {
			return nil, fmt.Errorf("etcd %s not ready: %w", ep, err)
		}
	}
	return c, nil
}

// stop stops every member (SIGTERM, SIGKILL after 10 s) and removes the data.
func (c *etcdCluster) stop() {
	for i, p := range c.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done[i]:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			<-c.done[i]
		}
	}
	_ = os.RemoveAll(c.dir)
}

// leader is the client address of the member that leads.
func (c *etcdCluster) leader(ctx context.Context) (string, error) {
	for _, ep := range c.clients {
		conn, err := dial(ep)
		if err != nil {
			return "", err
		}
		st, err := pb.NewMaintenanceClient(conn).Status(ctx, &pb.StatusRequest{})
		_ = conn.Close()
		if err == nil && st.Header.MemberId == st.Leader {
			return ep, nil
		}
	}
	return "", errors.New("no etcd member says it leads")
}

// cpu is the sum of the members' process_cpu_seconds_total (GET /metrics).
func (c *etcdCluster) cpu(ctx context.Context) (float64, error) {
	var sum float64
	for _, ep := range c.clients {
		v, err := scrapeCPU(ctx, "http://"+ep+"/metrics")
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// scrapeCPU reads process_cpu_seconds_total from url, trying three times.
func scrapeCPU(ctx context.Context, url string) (v float64, err error) {
	for range 3 {
		if v, err = scrapeCPUOnce(ctx, url); err == nil {
			return v, nil
		}
	}
	return 0, err
}

func scrapeCPUOnce(ctx context.Context, url string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", url, err)
	}
	return 0, fmt.Errorf("%s: no process_cpu_seconds_total", url)
}

func dial(ep string) (*grpc.ClientConn, error) {
	return grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// Operations of the etcd load.
const (
	opLinGet = "lin-get"
	opSerGet = "ser-get"
	opPut    = "put"
)

const (
	etcdKeys  = 1000
	valueSize = 256
)

// loadEtcd preloads etcdKeys keys, then runs callers over conns
// connections (spread over the members, or all on the leader) doing op on
// random keys for d; the result has the shape of `trustfed bench`'s.
func loadEtcd(ctx context.Context, c *etcdCluster, op string, pin bool, callers, conns int, d time.Duration) (result, error) {
	res := result{Errors: map[string]int{}}
	eps := c.clients
	if pin {
		l, err := c.leader(ctx)
		if err != nil {
			return res, err
		}
		eps = []string{l}
	}
	var cs []pb.KVClient
	for k := range conns {
		conn, err := dial(eps[k%len(eps)])
		if err != nil {
			return res, err
		}
		defer conn.Close()
		cs = append(cs, pb.NewKVClient(conn))
	}
	value := make([]byte, valueSize)
	for i := range etcdKeys {
		if _, err := cs[0].Put(ctx, &pb.PutRequest{Key: key(i), Value: value}); err != nil {
			return res, fmt.Errorf("preload etcd: %w", err)
		}
	}
	cpu0, cpuErr := c.cpu(ctx)
	end := time.Now().Add(d)
	start := time.Now()
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for i := range callers {
		kv := cs[i%len(cs)]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			var mine []time.Duration
			errs := map[string]int{}
			for ctx.Err() == nil && time.Now().Before(end) {
				k := key(rng.IntN(etcdKeys))
				t0 := time.Now()
				var err error
				switch op {
				case opPut:
					_, err = kv.Put(ctx, &pb.PutRequest{Key: k, Value: value})
				default:
					_, err = kv.Range(ctx, &pb.RangeRequest{Key: k, Serializable: op == opSerGet})
				}
				if err != nil {
					errs[status.Code(err).String()]++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			for k, v := range errs {
				res.Errors[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, err := c.cpu(ctx)
	if cpuErr == nil {
		cpuErr = err
	}
	if cpuErr != nil {
		log.Printf("etcd CPU left out: %v", cpuErr)
	}
	res.Ops = len(lat)
	res.DurationS = elapsed.Seconds()
	res.OpsPerS = float64(res.Ops) / elapsed.Seconds()
	slices.Sort(lat)
	if len(lat) > 0 {
		res.LatencyUS.P50 = us(lat[len(lat)/2])
		res.LatencyUS.P99 = us(lat[min(len(lat)-1, len(lat)*99/100)])
		if cpuErr == nil {
			cpu := (cpu1 - cpu0) * 1e6 / float64(res.Ops)
			res.ServerCPUUSPerOp = &cpu
		}
	}
	return res, nil
}

func key(i int) []byte { return []byte(fmt.Sprintf("bench/key/%04d", i)) }

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
