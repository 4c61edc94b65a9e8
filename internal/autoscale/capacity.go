package autoscale

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
)

// DefaultTarget is the utilisation the fleet aims at when none is given: a
// gateway is planned to run at 70 % of what it can take, which leaves room
// for the join burst that arrives while a new gateway is starting.
const DefaultTarget = 0.7

// DefaultConns is the connection capacity assumed when no capacity is given:
// a gateway process here is capped by 20,000 file descriptors.
const DefaultConns = 19000

// Capacity is the capacity model: what one gateway can take in each
// dimension, and the share of it the fleet is planned to use. A zero limit
// means the dimension is not limited and is ignored. It is the shape of the
// file `liveroom bench capacity` writes.
type Capacity struct {
	// Conns is viewer connections per gateway.
	Conns int `json:"conns"`
	// CPU is cores per gateway.
	CPU float64 `json:"cpu"`
	// BytesOut is bytes written to viewers per second per gateway.
	BytesOut float64 `json:"bytes_out"`
	// MsgsOut is messages delivered to viewers per second per gateway.
	MsgsOut float64 `json:"msgs_out"`
	// Target is the planned utilisation in (0,1]. Default DefaultTarget.
	Target float64 `json:"target"`
}

// WithDefaults fills a zero Target, and a zero Conns when no dimension is
// limited at all (DefaultConns).
func (c Capacity) WithDefaults() Capacity {
	if c.Target == 0 {
		c.Target = DefaultTarget
	}
	if c.Conns == 0 && c.CPU == 0 && c.BytesOut == 0 && c.MsgsOut == 0 {
		c.Conns = DefaultConns
	}
	return c
}

// GatewayArgs are the gateway flags that make a gateway measure its load
// against c: --max-conns, --max-cpu, --max-bytes-out and --max-msgs-out,
// for the limits c sets. A process actuator gives them to every child, so
// that the children's load scores (and so dispatch) measure against the
// capacity the autoscaler plans with.
func (c Capacity) GatewayArgs() []string {
	var args []string
	if c.Conns > 0 {
		args = append(args, "--max-conns", strconv.Itoa(c.Conns))
	}
	for _, l := range []struct {
		flag string
		v    float64
	}{{"--max-cpu", c.CPU}, {"--max-bytes-out", c.BytesOut}, {"--max-msgs-out", c.MsgsOut}} {
		if l.v > 0 {
			args = append(args, l.flag, strconv.FormatFloat(l.v, 'g', -1, 64))
		}
	}
	return args
}

// Validate reports a limit below zero or a target outside (0,1].
func (c Capacity) Validate() error {
	if c.Conns < 0 || c.CPU < 0 || c.BytesOut < 0 || c.MsgsOut < 0 ||
		math.IsNaN(c.CPU) || math.IsNaN(c.BytesOut) || math.IsNaN(c.MsgsOut) {
		return errors.New("capacity: limits must be zero (not limited) or positive")
	}
	if !(c.Target > 0 && c.Target <= 1) {
		return fmt.Errorf("capacity: target utilisation %v must be in (0,1]", c.Target)
	}
	return nil
}

// LoadCapacity reads a capacity file as written by `liveroom bench capacity`:
// {"conns":N,"cpu":cores,"bytes_out":B/s,"msgs_out":M/s,"target":0.7}. The
// target may also be spelt "target_utilisation"; other fields (the measured
// steps) are ignored. Defaults are not filled in.
func LoadCapacity(path string) (Capacity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Capacity{}, fmt.Errorf("cannot read capacity file: %w", err)
	}
	var f struct {
		Capacity
		TargetUtilisation float64 `json:"target_utilisation"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return Capacity{}, fmt.Errorf("cannot read capacity file %s: %w", path, err)
	}
	c := f.Capacity
	if c.Target == 0 {
		c.Target = f.TargetUtilisation
	}
	if c.Conns == 0 && c.CPU == 0 && c.BytesOut == 0 && c.MsgsOut == 0 {
		return Capacity{}, fmt.Errorf("capacity file %s limits no dimension (conns, cpu, bytes_out, msgs_out)", path)
	}
	return c, nil
}

// Dimensions of the capacity model, also the reasons of a scale-out that a
// dimension drove and the values of the metrics' dimension label.
const (
	DimConns    = "conns"
	DimCPU      = "cpu"
	DimBytesOut = "bytes_out"
	DimMsgsOut  = "msgs_out"
)

// Dims lists the dimensions in the order ties are broken.
var Dims = []string{DimConns, DimCPU, DimBytesOut, DimMsgsOut}

// Load is a demand in every dimension: the sum over gateways of what their
// beats report.
type Load struct {
	Conns    float64 `json:"conns"`
	CPU      float64 `json:"cpu"`
	BytesOut float64 `json:"bytes_out"`
	MsgsOut  float64 `json:"msgs_out"`
}

func (l Load) get(dim string) float64 {
	switch dim {
	case DimConns:
		return l.Conns
	case DimCPU:
		return l.CPU
	case DimBytesOut:
		return l.BytesOut
	}
	return l.MsgsOut
}

func (c Capacity) limit(dim string) float64 {
	switch dim {
	case DimConns:
		return float64(c.Conns)
	case DimCPU:
		return c.CPU
	case DimBytesOut:
		return c.BytesOut
	}
	return c.MsgsOut
}

// Need is how many gateways the demand needs in one dimension:
// ceil(demand ÷ (limit × target)); 0 for a dimension that is not limited.
func (c Capacity) Need(dim string, demand float64) int {
	lim := c.limit(dim) * c.Target
	if lim <= 0 || demand <= 0 {
		return 0
	}
	// The epsilon keeps 2100 connections at 2,100 per gateway one gateway,
	// not two, whatever the float rounding.
	return int(math.Ceil(demand/lim - 1e-9))
}
