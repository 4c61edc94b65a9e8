// Package metrics builds the Prometheus registry every liveroom process
// exposes on /metrics: Go runtime and process collectors, the machine
// figures autoscaling reads (load average, network bytes and packets), and
// whatever the roles register. No globals: each process builds one registry
// and passes it to its roles.
package metrics

import (
	"bufio"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the Go, process and machine
// collectors registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		machineCollector{},
	)
	return reg
}

// Handler serves the registry in the Prometheus exposition format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError})
}

// machineCollector reads machine-wide figures from /proc at scrape time.
type machineCollector struct{}

var (
	loadDesc = prometheus.NewDesc("liveroom_machine_load_average", "System load average over the period.", []string{"period"}, nil)
	netBytes = prometheus.NewDesc("liveroom_machine_network_transmit_bytes_total", "Bytes sent by all non-loopback interfaces.", nil, nil)
	netPkts  = prometheus.NewDesc("liveroom_machine_network_transmit_packets_total", "Packets sent by all non-loopback interfaces.", nil, nil)
	netRBy   = prometheus.NewDesc("liveroom_machine_network_receive_bytes_total", "Bytes received by all non-loopback interfaces.", nil, nil)
	loBytes  = prometheus.NewDesc("liveroom_machine_loopback_transmit_bytes_total", "Bytes sent over loopback (where tests and benchmarks run).", nil, nil)
)

func (machineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{loadDesc, netBytes, netPkts, netRBy, loBytes} {
		ch <- d
	}
}

func (machineCollector) Collect(ch chan<- prometheus.Metric) {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		for i, period := range []string{"1m", "5m", "15m"} {
			if i < len(f) {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					ch <- prometheus.MustNewConstMetric(loadDesc, prometheus.GaugeValue, v, period)
				}
			}
		}
	}
	if tx, pk, rx, lo, ok := readNetDev(); ok {
		ch <- prometheus.MustNewConstMetric(netBytes, prometheus.CounterValue, tx)
		ch <- prometheus.MustNewConstMetric(netPkts, prometheus.CounterValue, pk)
		ch <- prometheus.MustNewConstMetric(netRBy, prometheus.CounterValue, rx)
		ch <- prometheus.MustNewConstMetric(loBytes, prometheus.CounterValue, lo)
	}
}

// readNetDev sums /proc/net/dev over interfaces (loopback apart).
func readNetDev() (txBytes, txPackets, rxBytes, loTx float64, ok bool) {
	f, err := os.Open("/proc/net/dev")
	if err != nil {
		return 0, 0, 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, found := strings.Cut(sc.Text(), ":")
		if !found {
			continue
		}
		v := strings.Fields(rest)
		if len(v) < 10 {
			continue
		}
		num := func(i int) float64 { x, _ := strconv.ParseFloat(v[i], 64); return x }
		if strings.TrimSpace(name) == "lo" {
			loTx += num(8)
			continue
		}
		rxBytes += num(0)
		txBytes += num(8)
		txPackets += num(9)
	}
	return txBytes, txPackets, rxBytes, loTx, true
}

// Func returns a collector that computes its metrics at scrape time, for
// figures a role already keeps (atomic counters, registries) so that the
// hot path pays nothing for being measured.
func Func(descs []*prometheus.Desc, collect func(chan<- prometheus.Metric)) prometheus.Collector {
	return &funcCollector{descs: descs, collect: collect}
}

type funcCollector struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (f *funcCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range f.descs {
		ch <- d
	}
}

func (f *funcCollector) Collect(ch chan<- prometheus.Metric) { f.collect(ch) }
