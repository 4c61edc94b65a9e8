package bench

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Hist is a latency histogram in microseconds (1 µs to 10 min, 3
// significant digits). It travels between processes in the standard HDR V2
// compressed encoding, so histograms from every child merge without loss of
// precision. Not safe for concurrent use.
type Hist struct{ h *hdrhistogram.Histogram }

const histMax = int64(600e6) // 10 minutes in µs

// NewHist returns an empty histogram.
func NewHist() *Hist { return &Hist{h: hdrhistogram.New(1, histMax, 3)} }

// Record adds one value in µs; values out of range are clamped.
func (h *Hist) Record(us int64) {
	_ = h.h.RecordValue(min(max(us, 1), histMax))
}

// Merge adds every value of o.
func (h *Hist) Merge(o *Hist) {
	if o != nil && o.h != nil {
		h.h.Merge(o.h)
	}
}

// Reset empties the histogram.
func (h *Hist) Reset() { h.h.Reset() }

// Count is the number of recorded values.
func (h *Hist) Count() int64 { return h.h.TotalCount() }

// Quantile returns the value at q (0 < q ≤ 1) in µs; 0 when empty.
func (h *Hist) Quantile(q float64) int64 {
	if h.Count() == 0 {
		return 0
	}
	return h.h.ValueAtQuantile(q * 100)
}

// Max returns the largest value in µs.
func (h *Hist) Max() int64 { return h.h.Max() }

// Summary is what reports show of a histogram, in milliseconds.
type Summary struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary returns the histogram's quantiles in ms.
func (h *Hist) Summary() Summary {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Summary{Count: h.Count(), P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)), P999: ms(h.Quantile(0.999)), Max: ms(h.Max())}
}

// MarshalJSON encodes the histogram in HDR V2 compressed form (base64).
func (h *Hist) MarshalJSON() ([]byte, error) {
	b, err := h.h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil, fmt.Errorf("cannot encode histogram: %w", err)
	}
	return json.Marshal(string(b))
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (h *Hist) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("cannot decode histogram: %w", err)
	}
	d, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return fmt.Errorf("cannot decode histogram: %w", err)
	}
	// Re-home the values in a histogram of the standard shape, so that
	// merges never drop values for a range mismatch.
	h.h = hdrhistogram.New(1, histMax, 3)
	h.h.Merge(d)
	return nil
}

// Hists holds one histogram per message class.
type Hists map[string]*Hist

// Get returns the class's histogram, creating it.
func (hs Hists) Get(class string) *Hist {
	h := hs[class]
	if h == nil {
		h = NewHist()
		hs[class] = h
	}
	return h
}

// Merge adds every class of o.
func (hs Hists) Merge(o Hists) {
	for k, h := range o {
		hs.Get(k).Merge(h)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
