package bench

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
)

// corpus is the built-in danmaku corpus: Chinese and English live-chat
// comments of typical lengths, one per line. The senders post these texts
// so that frame sizes and compression ratios look like a real room's.
//
//go:embed testdata/danmaku.txt
var corpus string

// danmakuTexts are the texts the senders cycle through, in a shuffled
// order, with their JSON send bodies ready for the raw sender.
type danmakuTexts struct {
	texts  []string
	bodies [][]byte
}

// loadTexts reads path (one comment per line; '#' starts a comment line),
// or the built-in corpus when path is empty.
func loadTexts(path string) (*danmakuTexts, error) {
	src := corpus
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("cannot read --texts: %w", err)
		}
		src = string(b)
	}
	t := &danmakuTexts{}
	for _, l := range strings.Split(src, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			t.texts = append(t.texts, l)
		}
	}
	if len(t.texts) == 0 {
		return nil, fmt.Errorf("no danmaku texts in %q", path)
	}
	rand.New(rand.NewPCG(1, 6)).Shuffle(len(t.texts), func(i, j int) { t.texts[i], t.texts[j] = t.texts[j], t.texts[i] })
	for _, s := range t.texts {
		b, err := json.Marshal(struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}{"danmaku", s})
		if err != nil {
			return nil, err
		}
		t.bodies = append(t.bodies, b)
	}
	return t, nil
}

// text is the n-th send's text, and its raw body.
func (t *danmakuTexts) text(n int64) (string, []byte) {
	i := int(n % int64(len(t.texts)))
	return t.texts[i], t.bodies[i]
}
